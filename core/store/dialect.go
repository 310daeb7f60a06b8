package store

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/blindpost/blindpost/internal/pgschema"
)

// dialect is what differs between SQLite and PostgreSQL. The SQL is
// shared: written for SQLite with ? placeholders and portable constructs
// (ON CONFLICT, RETURNING, qualified column names in DO UPDATE), rebound
// for PostgreSQL once per query. Ingest has statements of its own on
// PostgreSQL, one per step over arrays rather than one per row (ingest.go).
type dialect struct {
	postgres bool
	// txOpts begin every write transaction: READ COMMITTED on
	// PostgreSQL, whatever the server's default, which the locking of
	// Ingest is written for (each statement sees what committed before it).
	txOpts *sql.TxOptions

	rebound sync.Map // query → query with this dialect's placeholders
}

var (
	sqliteDialect   = &dialect{}
	postgresDialect = &dialect{postgres: true, txOpts: &sql.TxOptions{Isolation: sql.LevelReadCommitted}}
)

// rebind returns query with PostgreSQL's numbered placeholders for its ?
// placeholders. The queries hold no ? anywhere else.
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
// transactions that running the transaction again resolves: a deadlock or
// a serialization failure. SQLite, with one writer, has neither.
func (d *dialect) retryable(err error) bool {
	return d.postgres && pgschema.Retryable(err)
}

// conflict reports whether err is a unique-constraint violation.
func (d *dialect) conflict(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// query and queryRow read outside any transaction, on the readers' pool.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	r, err := s.rdb.QueryContext(ctx, s.d.rebind(query), args...)
	return r, s.closed(err)
}

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.rdb.QueryRowContext(ctx, s.d.rebind(query), args...)
}

// txn is one write transaction. On SQLite it runs the statements the store
// prepared (batchsql.go) and prepares any other once per transaction (pgx
// caches PostgreSQL's prepared statements per connection by itself).
type txn struct {
	tx       *sql.Tx
	d        *dialect
	now      int64 // Unix milliseconds when the transaction began
	stmts    map[string]*sql.Stmt
	prepared map[string]*sql.Stmt // the store's (SQLite)
	cache    *playerCache         // the store's (SQLite), nil if none
	labels   *sync.Map            // the store's labels known to exist
	// pending is the players' state as this transaction leaves it, for
	// the cache once it committed.
	pending map[ckey]cachedPlayer
}

// maxAttempts bounds how often write runs a transaction that lost a
// conflict with another node's.
const maxAttempts = 5

// write runs fn in a write transaction and commits it. On PostgreSQL, a
// transaction that deadlocks or fails to serialize is run again from the
// start: fn must set, not accumulate, what it reports to its caller.
func (s *Store) write(ctx context.Context, fn func(*txn) error) error {
	for attempt := 1; ; attempt++ {
		err := s.writeOnce(ctx, fn)
		if err == nil || attempt == maxAttempts || !s.d.retryable(err) {
			return s.closed(err)
		}
		s.log.Debug("store transaction conflicted, retrying", "attempt", attempt, "err", err)
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(5*time.Millisecond)))):
		case <-ctx.Done():
			return err
		}
	}
}

func (s *Store) writeOnce(ctx context.Context, fn func(*txn) error) error {
	tx, err := s.db.BeginTx(ctx, s.d.txOpts)
	if err != nil {
		return err
	}
	t := &txn{tx: tx, d: s.d, now: s.now().UnixMilli(), prepared: s.prepared, cache: s.cache, labels: &s.labels}
	if t.cache != nil {
		t.pending = make(map[ckey]cachedPlayer)
	}
	if err := fn(t); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for k, v := range t.pending {
		t.cache.put(k, v)
	}
	return nil
}

func (t *txn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if t.d.postgres {
		return t.tx.ExecContext(ctx, t.d.rebind(query), args...)
	}
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t *txn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if t.d.postgres {
		return t.tx.QueryContext(ctx, t.d.rebind(query), args...)
	}
	st, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (t *txn) queryRow(ctx context.Context, query string, args ...any) row {
	if t.d.postgres {
		return row{r: t.tx.QueryRowContext(ctx, t.d.rebind(query), args...)}
	}
	st, err := t.stmt(ctx, query)
	if err != nil {
		return row{err: err}
	}
	return row{r: st.QueryRowContext(ctx, args...)}
}

// row is a *sql.Row that may carry the error of preparing its statement.
type row struct {
	r   *sql.Row
	err error
}

func (r row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return r.r.Scan(dest...)
}

// stmt returns query prepared in the transaction; it closes with it.
func (t *txn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := t.stmts[query]; ok {
		return st, nil
	}
	var st *sql.Stmt
	if p := t.prepared[query]; p != nil {
		st = t.tx.StmtContext(ctx, p)
	} else {
		var err error
		if st, err = t.tx.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
	}
	if t.stmts == nil {
		t.stmts = make(map[string]*sql.Stmt)
	}
	t.stmts[query] = st
	return st, nil
}
