package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/blindpost/blindpost/vault"
)

func TestDatabaseErrorsAreClassifiedAndQuoteNoValues(t *testing.T) {
	const value = "canary-4711@example.com"
	for _, c := range []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"invalid input quoting a value", &pgconn.PgError{Code: "22P02", Message: `invalid input syntax: "` + value + `"`}, false},
		{"unique violation", &pgconn.PgError{Code: "23505", Message: "duplicate key", Detail: "Key (token)=(" + value + ")", ConstraintName: "tokens_pkey"}, false},
		{"admin shutdown", &pgconn.PgError{Code: "57P01", Message: "terminating connection"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300", Message: "too many clients"}, true},
		{"deadlock", &pgconn.PgError{Code: "40P01", Message: "deadlock detected"}, true},
		{"read-only standby", &pgconn.PgError{Code: "25006", Message: "read-only transaction"}, true},
		{"lock timeout", &pgconn.PgError{Code: "55P03", Message: "lock timeout"}, true},
		{"connection dropped", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"deadline", context.DeadlineExceeded, true},
		{"canceled by the caller", context.Canceled, false},
	} {
		err := dbErr("op", c.err)
		if got := errors.Is(err, vault.ErrUnavailable); got != c.unavailable {
			t.Errorf("%s: matches ErrUnavailable = %v, want %v (%v)", c.name, got, c.unavailable, err)
		}
		if strings.Contains(err.Error(), value) {
			t.Errorf("%s: %q quotes a value", c.name, err)
		}
		var pe *pgconn.PgError
		if errors.As(c.err, &pe) && (!errors.As(err, &pe) || !strings.Contains(err.Error(), pe.Code)) {
			t.Errorf("%s: %q lost the server error or its code", c.name, err)
		}
	}
	if dbErr("op", nil) != nil {
		t.Error("dbErr(nil) != nil")
	}
}
