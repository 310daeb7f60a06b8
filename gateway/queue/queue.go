// Package queue is the gateway's durable queue: it holds the message
// requests accepted from the core, the final answers remembered for
// de-duplication, and the outbox of status callbacks. It lives in one
// SQLite file (Open) for a single gateway node, or in a PostgreSQL schema
// (OpenPostgres) that several nodes share; the same Queue, with the same
// semantics, runs on either.
//
// It sits on the operator side of the trust boundary, between accepting a
// sealed request and sending it. It stores requests exactly as they arrived
// (tokens and {{pii.*}} placeholders), never resolved PII: resolution happens
// at send time, after Claim, and nothing resolved ever comes back here.
//
// Accept is acknowledged only once its transaction is durable (SQLite: WAL
// with synchronous=FULL; PostgreSQL: its commit, with synchronous_commit
// left on); concurrent calls share one transaction and one sync (group
// commit). Sending is at least once: an entry stays in the queue,
// leased, until Finish or Retry, and a lease that runs out makes it claimable
// again.
package queue

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Answer statuses.
const (
	StatusAccepted = "accepted"
	StatusRejected = "rejected"
)

var (
	ErrClosed   = errors.New("queue: closed")
	ErrNotFound = errors.New("queue: not found")
	ErrInvalid  = errors.New("queue: invalid argument")
)

// Options configure a Queue. The zero value is usable.
type Options struct {
	Now       func() time.Time // default time.Now
	MaxBatch  int              // items per group commit, default 1000
	AnswerTTL time.Duration    // how long final answers are remembered, default 7 days
	Logger    *slog.Logger     // default slog.Default()

	// Node names this gateway node among those sharing a PostgreSQL
	// queue. Claims record it, and ReleaseLeases ends only its own
	// leases, so it must stay the same across the node's restarts and
	// differ from every other node's. "" is the only node.
	Node string
	// Schema is the PostgreSQL schema holding the queue's tables,
	// default DefaultSchema. Ignored by Open.
	Schema string
	// MaxConns bounds the PostgreSQL connections, default 8: the two
	// group-commit writers, claims, and reads. Ignored by Open, which
	// keeps one SQLite connection.
	MaxConns int
}

// Item is one message of an envelope as Accept sees it.
type Item struct {
	Tenant, ID string   // the core's idempotency key, unique per tenant
	Hash       [32]byte // SHA-256 of the message's canonical JSON
	Answer     Answer   // the final answer to remember
	Entry      *Entry   // non-nil exactly when Answer.Status is "accepted"
	Callback   *Event   // optional status event, same transaction; Tenant, MsgID, ExtMessageID set from the item
	// Reserve lists frequency-cap counters to take with the entry. They are
	// checked and taken in the same transaction as the enqueue, so
	// concurrent accepts cannot overshoot a cap; if one is full, the
	// entry is not enqueued and the remembered answer is a rejection with
	// CodeFrequencyCap.
	Reserve []Reservation
}

// Reservation is one frequency-cap counter: at most Limit reservations of
// Key within the Window before now.
type Reservation struct {
	Key    string
	Window time.Duration
	Limit  int
}

// CodeFrequencyCap is the rejection code of an entry refused because a
// frequency cap was full.
const CodeFrequencyCap = "frequency_cap"

// Answer is the final answer given to the core for one message id.
type Answer struct {
	Status       string `json:"status"` // "accepted" or "rejected"
	ExtMessageID string `json:"ext_message_id,omitempty"`
	Code         string `json:"code,omitempty"`
	Message      string `json:"message,omitempty"`
}

// Outcome is Accept's answer for one Item.
type Outcome struct {
	Answer Answer // the item's answer, or the first answer for a duplicate; empty on conflict
	// Duplicate: the id was seen with the same hash; nothing was written.
	Duplicate bool
	// Conflict: the id was seen with another hash; nothing was written.
	Conflict bool
}

// Entry is a queued message request.
type Entry struct {
	ExtID  string // the gateway's ext_message_id
	Tenant string
	MsgID  string // the core's id
	Brand  string
	User   string // set when addressed by subject, "" when addressed by token

	Request  []byte // the message request exactly as it arrived
	Envelope []byte // optional: batch header, root, signature, proof for the audit log

	NotBefore time.Time // next attempt; zero means now
	ExpiresAt time.Time // zero means never
	Attempts  int       // incremented by Claim
	Created   time.Time // set by Accept when zero

	// CallbackURL, when set, is where this message's status events go
	// instead of the tenant's callback URL (the compat API's callback_url,
	// checked against the operator's allow-list before it was queued).
	CallbackURL string
	// Compat holds, for a request of the compatibility API, what it
	// carries beyond a native message request (the gateway's JSON); nil
	// for native requests.
	Compat []byte
}

// Event is a status callback in the outbox. Seq is assigned per tenant when
// the event is written; ID and Attempts are set by ClaimEvents.
type Event struct {
	ID           int64 // outbox id, for AckEvent and RetryEvent
	Tenant       string
	MsgID        string
	ExtMessageID string
	Status       string
	Reason       string
	DecisionID   string
	Seq          int64
	Time         time.Time // set to Now when zero
	Checkpoint   string
	Attempts     int // delivery attempts so far, including the current one
	// CallbackURL is copied from the entry: "" means the tenant's URL.
	CallbackURL string
}

// ProviderRef is a provider's id for a sent message (Twilio's MessageSid,
// an SMSC's message_id), kept so that the provider's delivery receipt finds
// the message after it left the queue.
type ProviderRef struct {
	Adapter string // e.g. "twilio", "http", "smpp"
	ID      string
}

// Stats counts the writer's work since Open.
type Stats struct {
	Calls   int64 // Accept calls written
	Items   int64 // items in those calls
	Commits int64 // transactions committed by the group-commit writer
}

// Queue is a durable queue in one SQLite file or one PostgreSQL schema.
// Its methods are safe for concurrent use, and on PostgreSQL for use by
// several processes at once.
type Queue struct {
	db   *sql.DB // SQLite: exactly one connection, it has one writer anyway
	d    *dialect
	node string
	now  func() time.Time
	ttl  time.Duration
	max  int
	log  *slog.Logger
	reqs chan *acceptReq
	ops  chan *groupOp // send-side updates for the group writer (group.go)

	closing   chan struct{}
	closeOnce sync.Once
	writer    sync.WaitGroup

	calls, items, commits atomic.Int64

	// Advisory lock spaces on PostgreSQL (see txn.lock), per schema so
	// that queues in other schemas of the database never wait for them.
	reserveLocks, receiptLocks int64
	swept                      atomic.Int64 // when expired nonces and counters were last deleted (Unix ns)
}

// newQueue applies opts' defaults; the caller sets db and calls start.
func newQueue(d *dialect, opts Options) *Queue {
	q := &Queue{
		d:       d,
		node:    opts.Node,
		now:     opts.Now,
		ttl:     opts.AnswerTTL,
		max:     opts.MaxBatch,
		log:     opts.Logger,
		reqs:    make(chan *acceptReq),
		ops:     make(chan *groupOp),
		closing: make(chan struct{}),
	}
	if q.now == nil {
		q.now = time.Now
	}
	if q.ttl <= 0 {
		q.ttl = 7 * 24 * time.Hour
	}
	if q.max <= 0 {
		q.max = 1000
	}
	if q.log == nil {
		q.log = slog.Default()
	}
	return q
}

// start starts the group-commit writers.
func (q *Queue) start() {
	q.writer.Add(2)
	go q.writeLoop()
	go q.groupLoop()
}

// Open opens or creates the queue file at path and migrates its schema.
func Open(path string, opts Options) (*Queue, error) {
	q := newQueue(sqliteDialect, opts)

	// Owner-only, before SQLite creates it: the -wal and -shm files copy
	// the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue: open: %w", err)
	}
	f.Close()

	v := url.Values{}
	v.Add("_pragma", "busy_timeout(10000)")
	v.Add("_pragma", "journal_mode(WAL)")
	v.Add("_pragma", "synchronous(FULL)")
	v.Add("_pragma", "temp_store(MEMORY)") // statement journals in memory, not temp files
	// Finished and cancelled requests are zeroed, not left in free pages:
	// an erased player's tokens must not outlive its messages in the file.
	v.Add("_pragma", "secure_delete(ON)")
	v.Set("_txlock", "immediate")
	// A file: URI, so the path is escaped and may hold any character.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + v.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("queue: open: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	q.db = db
	if err := q.migrate(context.Background()); err != nil {
		db.Close()
		return nil, err
	}
	q.start()
	return q, nil
}

// Close stops accepting, waits for the transaction in progress, and closes
// the database. Calls waiting in Accept get ErrClosed.
func (q *Queue) Close() error {
	var err error
	q.closeOnce.Do(func() {
		close(q.closing)
		q.writer.Wait()
		err = q.db.Close()
	})
	return err
}

// Stats reports the group-commit writer's counters.
func (q *Queue) Stats() Stats {
	return Stats{Calls: q.calls.Load(), Items: q.items.Load(), Commits: q.commits.Load()}
}

// migrations are SQLite's, applied in order; PRAGMA user_version records
// how many ran. Append, never edit. PostgreSQL has its own list
// (pgMigrations), which must arrive at the same tables.
var migrations = []string{
	`
CREATE TABLE answers (
	tenant         TEXT    NOT NULL,
	id             TEXT    NOT NULL,
	hash           BLOB    NOT NULL,
	status         TEXT    NOT NULL,
	ext_message_id TEXT    NOT NULL,
	code           TEXT    NOT NULL,
	message        TEXT    NOT NULL,
	created        INTEGER NOT NULL,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX answers_created ON answers (created);

-- due is when the entry may next be claimed: not_before, or the end of its lease.
CREATE TABLE entries (
	ext_id     TEXT    PRIMARY KEY,
	tenant     TEXT    NOT NULL,
	msg_id     TEXT    NOT NULL,
	brand      TEXT    NOT NULL,
	user       TEXT    NOT NULL,
	request    BLOB    NOT NULL,
	envelope   BLOB,
	not_before INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	attempts   INTEGER NOT NULL,
	created    INTEGER NOT NULL,
	due        INTEGER NOT NULL
);
CREATE INDEX entries_due ON entries (due);
CREATE INDEX entries_msg ON entries (tenant, msg_id);
CREATE INDEX entries_subject ON entries (tenant, brand, user) WHERE user <> '';

-- Sequence numbers outlive the events they numbered, so they stay increasing.
CREATE TABLE seqs (
	tenant TEXT    PRIMARY KEY,
	last   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE events (
	id             INTEGER PRIMARY KEY,
	tenant         TEXT    NOT NULL,
	seq            INTEGER NOT NULL,
	msg_id         TEXT    NOT NULL,
	ext_message_id TEXT    NOT NULL,
	status         TEXT    NOT NULL,
	reason         TEXT    NOT NULL,
	decision_id    TEXT    NOT NULL,
	time           INTEGER NOT NULL,
	checkpoint     TEXT    NOT NULL,
	attempts       INTEGER NOT NULL DEFAULT 0,
	next_at        INTEGER NOT NULL,
	due            INTEGER NOT NULL,
	UNIQUE (tenant, seq)
);
CREATE INDEX events_due ON events (due);
`,
	`
-- Frequency-cap reservations: one row per message and counter, kept until
-- its window has passed.
CREATE TABLE reservations (
	key    TEXT    NOT NULL,
	at     INTEGER NOT NULL,
	until  INTEGER NOT NULL,
	ext_id TEXT    NOT NULL
);
CREATE INDEX reservations_key ON reservations (key, at);
CREATE INDEX reservations_until ON reservations (until);
`,
	`
ALTER TABLE entries ADD COLUMN callback_url TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN callback_url TEXT NOT NULL DEFAULT '';

-- The providers' ids of sent messages, for their delivery receipts. receipt
-- is the last status a receipt reported, so a repeated receipt adds no event.
CREATE TABLE provider_ids (
	adapter        TEXT    NOT NULL,
	provider_id    TEXT    NOT NULL,
	tenant         TEXT    NOT NULL,
	msg_id         TEXT    NOT NULL,
	ext_message_id TEXT    NOT NULL,
	callback_url   TEXT    NOT NULL,
	receipt        TEXT    NOT NULL DEFAULT '',
	created        INTEGER NOT NULL,
	PRIMARY KEY (adapter, provider_id)
) WITHOUT ROWID;
CREATE INDEX provider_ids_ext ON provider_ids (ext_message_id);
CREATE INDEX provider_ids_created ON provider_ids (created);
`,
	`
-- What a compatibility-API request carries beyond a native message request
-- (JSON; NULL for native requests).
ALTER TABLE entries ADD COLUMN compat BLOB;
`,
	`
-- The node holding an entry's or an event's lease: ReleaseLeases on
-- PostgreSQL ends only its own node's (one file has one node).
ALTER TABLE entries ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN owner TEXT NOT NULL DEFAULT '';

-- The envelopes' nonces, until they expire (CheckNonce).
CREATE TABLE nonces (
	tenant TEXT    NOT NULL,
	nonce  BLOB    NOT NULL,
	until  INTEGER NOT NULL,
	PRIMARY KEY (tenant, nonce)
) WITHOUT ROWID;
CREATE INDEX nonces_until ON nonces (until);

-- Requests per tenant, node and second: the volume guard (AddVolume).
CREATE TABLE volume (
	tenant TEXT    NOT NULL,
	second INTEGER NOT NULL,
	node   TEXT    NOT NULL,
	n      INTEGER NOT NULL,
	PRIMARY KEY (tenant, second, node)
) WITHOUT ROWID;
`,
}

func (q *Queue) migrate(ctx context.Context) error {
	var version int
	if err := q.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("queue: read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("queue: schema version %d is newer than this binary (%d)", version, len(migrations))
	}
	fresh := version == 0
	for ; version < len(migrations); version++ {
		tx, err := q.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("queue: migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, migrations[version]); err != nil {
			tx.Rollback()
			return fmt.Errorf("queue: migrate to %d: %w", version+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("queue: migrate to %d: %w", version+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("queue: migrate to %d: %w", version+1, err)
		}
		if !fresh { // an upgrade, not a new file
			q.log.Info("queue schema migrated", "version", version+1)
		}
	}
	return nil
}

// Prune forgets final answers older than AnswerTTL, except those whose entry
// is still queued (a retry must never enqueue a message twice), and deletes
// the frequency-cap reservations, nonces and volume counters that have run
// out. It returns how many answers it forgot.
func (q *Queue) Prune(ctx context.Context) (int, error) {
	res, err := q.exec(ctx, `
DELETE FROM answers WHERE created < ? AND NOT EXISTS (
	SELECT 1 FROM entries e WHERE e.tenant = answers.tenant AND e.msg_id = answers.id)`,
		unixNano(q.now().Add(-q.ttl)))
	if err != nil {
		return 0, fmt.Errorf("queue: prune answers: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := q.exec(ctx, `DELETE FROM reservations WHERE until < ?`, unixNano(q.now())); err != nil {
		return int(n), fmt.Errorf("queue: prune reservations: %w", err)
	}
	// Providers report delivery within hours; a receipt later than the
	// answers' horizon finds nothing and is acknowledged all the same.
	if _, err := q.exec(ctx, `DELETE FROM provider_ids WHERE created < ?`, unixNano(q.now().Add(-q.ttl))); err != nil {
		return int(n), fmt.Errorf("queue: prune provider ids: %w", err)
	}
	if err := q.sweep(ctx); err != nil {
		return int(n), err
	}
	return int(n), nil
}

// Count returns how many reservations of key were taken since since: the
// counter a frequency cap is checked against.
func (q *Queue) Count(ctx context.Context, key string, since time.Time) (int, error) {
	var n int
	err := q.queryRow(ctx, `SELECT count(*) FROM reservations WHERE key = ? AND at > ?`,
		key, unixNano(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("queue: count reservations: %w", err)
	}
	return n, nil
}

// exec and queryRow run one statement outside any transaction.
func (q *Queue) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return q.db.ExecContext(ctx, q.d.rebind(query), args...)
}

func (q *Queue) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return q.db.QueryRowContext(ctx, q.d.rebind(query), args...)
}

// txn is one write transaction. On SQLite it prepares each statement once
// (pgx caches PostgreSQL's prepared statements per connection by itself).
type txn struct {
	tx     *sql.Tx
	d      *dialect
	now    int64 // Unix nanoseconds when the transaction began
	stmts  map[string]*sql.Stmt
	events []Event          // outbox events to write at the commit (writeEvents)
	locked map[lockKey]bool // advisory locks held (PostgreSQL)
}

// maxAttempts bounds how often write runs a transaction that lost a
// conflict with another node's.
const maxAttempts = 5

// write runs fn in a write transaction and commits it. On PostgreSQL, a
// transaction that deadlocks or fails to serialize with another node's is
// run again from the start, up to maxAttempts times: fn must set, not
// accumulate, what it reports to its caller.
func (q *Queue) write(ctx context.Context, fn func(*txn) error) error {
	for attempt := 1; ; attempt++ {
		err := q.writeOnce(ctx, fn)
		if err == nil || attempt == maxAttempts || !q.d.retryable(err) {
			return err
		}
		q.log.Debug("queue transaction conflicted, retrying", "attempt", attempt, "err", err)
		// Back off a little, at random, so the conflicting transactions
		// do not meet again.
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(5*time.Millisecond)))):
		case <-ctx.Done():
			return err
		}
	}
}

func (q *Queue) writeOnce(ctx context.Context, fn func(*txn) error) error {
	tx, err := q.db.BeginTx(ctx, q.d.txOpts)
	if err != nil {
		return err
	}
	t := &txn{tx: tx, d: q.d, now: unixNano(q.now())}
	err = fn(t)
	if err == nil {
		err = t.writeEvents(ctx)
	}
	if err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// exec, query and queryRow run a statement in the transaction.
func (t *txn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if t.d.postgres {
		return t.tx.ExecContext(ctx, t.d.rebind(query), args...)
	}
	s, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

func (t *txn) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if t.d.postgres {
		return t.tx.QueryContext(ctx, t.d.rebind(query), args...)
	}
	s, err := t.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

func (t *txn) queryRow(ctx context.Context, query string, args ...any) row {
	if t.d.postgres {
		return row{r: t.tx.QueryRowContext(ctx, t.d.rebind(query), args...)}
	}
	s, err := t.stmt(ctx, query)
	if err != nil {
		return row{err: err}
	}
	return row{r: s.QueryRowContext(ctx, args...)}
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
	if s, ok := t.stmts[query]; ok {
		return s, nil
	}
	s, err := t.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if t.stmts == nil {
		t.stmts = make(map[string]*sql.Stmt)
	}
	t.stmts[query] = s
	return s, nil
}

// lockKey is an advisory lock: a key within a space of the queue's.
type lockKey struct {
	space int64
	key   string
}

// lock takes an advisory lock on PostgreSQL, held until the transaction
// ends, so that the transactions of every node that check and then change
// the same thing (a frequency cap's counter, a message's receipts) do so
// one at a time. SQLite has one writer: nothing to do.
func (t *txn) lock(ctx context.Context, space int64, key string) error {
	k := lockKey{space, key}
	if !t.d.postgres || t.locked[k] {
		return nil
	}
	if _, err := t.exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(?, ?))`, key, space); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if t.locked == nil {
		t.locked = make(map[lockKey]bool)
	}
	t.locked[k] = true
	return nil
}

// Times are stored as Unix nanoseconds; 0 stands for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
