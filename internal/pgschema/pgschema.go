// Package pgschema prepares a PostgreSQL schema for one of blindpost's
// stores (the gateway's shared queue, the core's store): it checks that the
// server keeps acknowledged commits, creates the schema when it is missing,
// and applies the store's migrations in order, once, under a lock so that
// nodes starting together do not race.
package pgschema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MinServerVersion is the oldest PostgreSQL the stores run on (11: the
// procedures and index features their migrations use).
const MinServerVersion = 110000

// ErrNotDurable: the connections run with synchronous_commit=off, so a
// commit the store acknowledged could be lost in a crash of the server.
var ErrNotDurable = errors.New("pgschema: synchronous_commit is off: acknowledged writes could be lost; turn it on for the role or database, or in the DSN")

// LockKey is the advisory-lock key of use (e.g. "schema") for the named
// store's schema: distinct per store, so the queue and the core never
// wait on each other's locks.
func LockKey(store, use, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("blindpost-" + store + "-" + use + "\x00" + schema))
	return int64(h.Sum64())
}

// Migrate checks the server, creates schema if it is missing (looking
// first: an operator may have created it for a role that may not create
// schemas) and applies the migrations the schema_version table does not
// record, each in the one transaction that holds the lock. In a
// migration, {s} stands for the quoted schema name. applied, if not nil,
// is called for each migration applied to a schema that had some already
// (an upgrade, worth a log line). Append to migrations, never edit them.
func Migrate(ctx context.Context, db *sql.DB, store, schema string, migrations []string, applied func(version int)) error {
	var v int
	if err := db.QueryRowContext(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&v); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if v < MinServerVersion {
		return fmt.Errorf("server version %d: need PostgreSQL 11 or newer", v)
	}
	var sync string
	if err := db.QueryRowContext(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&sync); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if sync == "off" {
		return ErrNotDurable
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, LockKey(store, "schema", schema)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	q := pgx.Identifier{schema}.Sanitize()
	var exists bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !exists {
		if _, err := tx.ExecContext(ctx, `CREATE SCHEMA `+q); err != nil {
			return fmt.Errorf("migrate: create schema: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+q+`.schema_version (
		version    int         PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM `+q+`.schema_version`).Scan(&cur); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if cur > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary (%d)", cur, len(migrations))
	}
	for v := cur + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, strings.ReplaceAll(migrations[v-1], "{s}", q)); err != nil {
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+q+`.schema_version (version) VALUES ($1)`, v); err != nil {
			return fmt.Errorf("migrate to %d: %w", v, err)
		}
		if cur > 0 && applied != nil {
			applied(v)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// Retryable reports whether err is a conflict between concurrent
// transactions that running the whole transaction again resolves: a
// deadlock or a serialization failure.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}
