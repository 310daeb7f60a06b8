package queue

import (
	"database/sql"
	"strconv"
	"strings"
	"sync"

	"github.com/blindpost/blindpost/internal/pgschema"
)

// dialect is what differs between the two databases a Queue runs on. The
// SQL itself is shared: it is written for SQLite, with ? placeholders and
// portable constructs only ("user" quoted, CASE instead of max(a, b),
// ON CONFLICT, RETURNING), and rebound for PostgreSQL once per query.
// PostgreSQL has a few statements of its own where one statement over
// arrays saves a round trip per row (acceptBulk, writeTenantEventsPG).
type dialect struct {
	postgres bool
	// txOpts begin every write transaction. PostgreSQL's are pinned to
	// READ COMMITTED: the locking below (SKIP LOCKED, row and advisory
	// locks, each statement seeing what committed before it) relies on
	// it, whatever the server's default.
	txOpts *sql.TxOptions
	// skipLocked ends the subqueries that pick rows to claim, so that
	// nodes claiming at once never pick the same row nor wait for each
	// other.
	skipLocked string

	rebound sync.Map // query → query with this dialect's placeholders
}

var (
	sqliteDialect   = &dialect{}
	postgresDialect = &dialect{
		postgres:   true,
		txOpts:     &sql.TxOptions{Isolation: sql.LevelReadCommitted},
		skipLocked: " FOR UPDATE SKIP LOCKED",
	}
)

// rebind returns query with PostgreSQL's numbered placeholders ($1, $2, …)
// for its ? placeholders. The queries hold no ? anywhere else.
func (d *dialect) rebind(query string) string {
	if !d.postgres {
		return query
	}
	if s, ok := d.rebound.Load(query); ok {
		return s.(string)
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := range len(query) {
		if c := query[i]; c != '?' {
			b.WriteByte(c)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	s := b.String()
	d.rebound.Store(query, s)
	return s
}

// retryable reports whether err is a conflict between concurrent
// transactions that running the whole transaction again resolves: a
// deadlock, or a serialization failure. SQLite, with one writer, has
// neither.
func (d *dialect) retryable(err error) bool {
	return d.postgres && pgschema.Retryable(err)
}
