// Package store is the core's durable store: the labels (an operator's
// integration: its brands, PII-firewall mode and custom event types), their
// API keys, the player events, the players' state those events build, the
// record of refused events, and the watermarks of the SQL-view connectors.
// It lives in one SQLite file (the default, for one core node) or in a
// PostgreSQL schema (for several); the same Store, with the same
// semantics, runs on either.
//
// It sits on the vendor side of the trust boundary, behind the PII
// firewall: events and properties reach it only once the firewall has let
// them through, and of a refused event it keeps the id, the reason and the
// JSON path, never a value. API keys are kept as SHA-256 hashes only.
//
// Ingest writes a batch of events in one transaction, acknowledged only
// once durable (SQLite: WAL with synchronous=FULL; PostgreSQL: its commit,
// with synchronous_commit left on). Events are de-duplicated by (label,
// eid) and, for now, kept for ever: nothing prunes them.
//
// On SQLite, one process ingests into the file (a lock file beside it sees
// to that; others, such as the admin CLI, may change labels and keys), one
// goroutine writes, concurrent Ingest calls share a commit (group.go), and
// recently seen players stay in memory (cache.go). On
// PostgreSQL, several core nodes share one schema: transactions lock the
// players they change, and retry when they deadlock.
package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Errors. Their messages name fields, never values.
var (
	ErrNotFound     = errors.New("store: not found")
	ErrExists       = errors.New("store: already exists")
	ErrInvalid      = errors.New("store: invalid argument")
	ErrUnauthorized = errors.New("store: unauthorized")
	ErrClosed       = errors.New("store: closed")
)

// Drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Firewall modes of a label: refuse an event with a PII-looking value, or
// strip the value and keep the event.
const (
	FirewallReject = "reject"
	FirewallStrip  = "strip"
)

// Config says where the store lives.
type Config struct {
	Driver string // DriverSQLite (the default) or DriverPostgres
	// Path is the SQLite database file, created owner-only (0600) if
	// missing, with its -wal, -shm and .lock files beside it.
	Path string
	// DSN is PostgreSQL's, a postgres:// URL or key=value string as pgx
	// takes it; Schema holds the store's tables, default DefaultSchema,
	// created if missing.
	DSN    string
	Schema string
	// MaxConns bounds PostgreSQL connections, default 8; on SQLite, the
	// readers beside the one writer, default 4.
	MaxConns int
	// PlayerCache is how many players SQLite's Ingest keeps in memory
	// between batches, default 100000 (some tens of MB); negative
	// disables it.
	PlayerCache int

	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// Store is the core's store. Its methods are safe for concurrent use, and
// on PostgreSQL for use by several core nodes at once.
type Store struct {
	db  *sql.DB // writes; SQLite: exactly one connection
	rdb *sql.DB // reads; SQLite: read-only connections beside the writer, which WAL lets run during a write
	cdb *sql.DB // SQLite: checkpoints (checkpointLoop)
	d   *dialect
	now func() time.Time
	log *slog.Logger

	// prepared are SQLite's statements of Ingest, prepared on the
	// writer's connection (batchsql.go).
	prepared map[string]*sql.Stmt
	// cache holds, on SQLite, the players recently ingested; only the
	// group-commit writer (group.go) uses it. lock, taken by the first
	// Ingest, keeps other processes from ingesting into the file behind
	// the cache's back.
	cache    *playerCache
	lockPath string
	lock     io.Closer

	labels sync.Map // ids of labels known to exist (labels are never deleted)

	// SQLite's group commit (group.go); nil reqs on PostgreSQL.
	reqs    chan *ingestReq
	closing chan struct{}
	writer  sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// Open opens the store cfg describes, creating and migrating its schema.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s := &Store{now: cfg.Now, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	switch cmp.Or(cfg.Driver, DriverSQLite) {
	case DriverSQLite:
		if cfg.Path == "" {
			return nil, fmt.Errorf("%w: sqlite needs a path", ErrInvalid)
		}
		if err := s.openSQLite(ctx, cfg); err != nil {
			s.Close()
			return nil, fmt.Errorf("store: sqlite: %w", err)
		}
	case DriverPostgres:
		if err := s.openPostgres(ctx, cfg); err != nil {
			s.Close()
			if errors.Is(err, ErrInvalid) {
				return nil, err
			}
			return nil, fmt.Errorf("store: postgres: %w", err)
		}
	default:
		return nil, fmt.Errorf("%w: driver %q: want %q or %q", ErrInvalid, cfg.Driver, DriverSQLite, DriverPostgres)
	}
	return s, nil
}

// Close waits for the transactions in progress and closes the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.closing != nil {
			close(s.closing)
			s.writer.Wait()
		}
		var errs []error
		for _, st := range s.prepared {
			errs = append(errs, st.Close())
		}
		if s.cdb != nil {
			errs = append(errs, s.cdb.Close())
		}
		if s.rdb != nil && s.rdb != s.db {
			errs = append(errs, s.rdb.Close())
		}
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
		if s.lock != nil {
			errs = append(errs, s.lock.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", s.closed(err))
	}
	return nil
}

// closed turns database/sql's error for a closed DB into ErrClosed.
func (s *Store) closed(err error) error {
	if err != nil && strings.Contains(err.Error(), "sql: database is closed") {
		return ErrClosed
	}
	return err
}

// Times are stored as Unix milliseconds, like event_date; 0 stands for the
// zero time.
func fromUnixMilli(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

var (
	labelID   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	eventType = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// maxName bounds a label's display name, a checkpoint's source and value.
const (
	maxName       = 200
	maxCheckpoint = 4096
)

// storable reports whether s can be stored alike on both databases:
// PostgreSQL's text holds neither invalid UTF-8 nor NUL.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// plainText reports whether s is storable and free of control characters:
// what names and identifiers an admin types may hold.
func plainText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
