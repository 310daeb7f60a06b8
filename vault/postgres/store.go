package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/blindpost/blindpost/vault"
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Schema is the PostgreSQL schema that holds the store's tables; Open
	// creates it if needed. Zero means "blindpost_vault". Lower-case
	// letters, digits and '_', at most 63 bytes.
	Schema string
	// TokenVersion pins the token key version of new tokens. Zero means
	// the key provider's TokenVersion.
	TokenVersion int
	// ExtraTokenVersions are token key versions Put indexes each record
	// under as well, during a re-tokenisation (vault.Retokenizer): tokens
	// of every indexed version resolve. Every node sharing the schema
	// must index the same versions. Empty otherwise.
	ExtraTokenVersions []int
	// ShredOnErase makes Erase run Shred before it returns, so an erased
	// subject's dead rows are gone when the caller hears back, at the cost
	// of rewriting the store's tables (and locking them) on every erase.
	// Without it, the gateway calls Shred on a schedule.
	ShredOnErase bool
	// ShredLockTimeout bounds how long Shred waits for the lock on a table
	// it rewrites. While it waits, every statement queued behind it on
	// that table waits too, so a long-running reader must make Shred give
	// up (and retry later) rather than stall the gateways. Zero means 2
	// seconds.
	ShredLockTimeout time.Duration
	// MaxConns bounds the connection pool. Zero keeps the DSN's
	// pool_max_conns, or pgxpool's default (the larger of 4 and the number
	// of CPUs).
	MaxConns int32
	// Logger receives operational warnings (never PII). Nil discards them.
	Logger *slog.Logger
}

// DefaultSchema is the schema of a Store opened with a zero Options.Schema.
const DefaultSchema = "blindpost_vault"

// Store is a vault.Store in PostgreSQL, shared by every gateway node that
// opens it with the same DSN, schema and key provider.
type Store struct {
	pool         *pgxpool.Pool
	kp           vault.KeyProvider
	tokenVersion int
	extraTokens  []int // ExtraTokenVersions
	shredOnErase bool
	lockTimeout  time.Duration
	log          *slog.Logger
	schema       string // quoted
	lockKey      int64  // advisory lock of this schema's migrations and shreds
	q            queries
	rq           rewrapQueries
	tq           retokenQueries

	// subjectLocks serialise Puts of one subject within this process, so
	// they queue here rather than each holding a pooled connection while
	// waiting for the row lock; the row lock covers other processes.
	subjectLocks [64]sync.Mutex

	mu      sync.Mutex
	checked map[string]bool // tenants whose key check this process has verified
}

var _ vault.Store = (*Store)(nil)

// queries are the store's statements with the schema filled in.
type queries struct {
	load, lockSubject, insertSubject, updateSubject, upsertKey, deleteTokens, insertTokens string
	lookup, deleteKey, deleteSubject, markPending                                          string
	keyChecks, keyCheck, insertKeyCheck                                                    string
}

func newQueries(schema string) queries {
	r := strings.NewReplacer("{s}", schema)
	return queries{
		load: r.Replace(`SELECT s.version, k.wrapped_key, s.sealed_record
			FROM {s}.subjects s LEFT JOIN {s}.data_keys k USING (tenant, brand, user_id)
			WHERE s.tenant = $1 AND s.brand = $2 AND s.user_id = $3`),
		lockSubject: r.Replace(`SELECT FROM {s}.subjects WHERE tenant = $1 AND brand = $2 AND user_id = $3 FOR UPDATE`),
		insertSubject: r.Replace(`INSERT INTO {s}.subjects (tenant, brand, user_id, version, sealed_record)
			VALUES ($1, $2, $3, 1, $4)`),
		updateSubject: r.Replace(`UPDATE {s}.subjects SET version = $4 + 1, sealed_record = $5
			WHERE tenant = $1 AND brand = $2 AND user_id = $3 AND version = $4`),
		upsertKey: r.Replace(`INSERT INTO {s}.data_keys (tenant, brand, user_id, wrapped_key) VALUES ($1, $2, $3, $4)
			ON CONFLICT (tenant, brand, user_id) DO UPDATE SET wrapped_key = excluded.wrapped_key`),
		deleteTokens: r.Replace(`DELETE FROM {s}.tokens WHERE tenant = $1 AND brand = $2 AND user_id = $3`),
		insertTokens: r.Replace(`INSERT INTO {s}.tokens (tenant, brand, user_id, token)
			SELECT $1, $2, $3, unnest($4::text[])`),
		lookup:         r.Replace(`SELECT user_id FROM {s}.tokens WHERE tenant = $1 AND brand = $2 AND token = $3 LIMIT 2`),
		deleteKey:      r.Replace(`DELETE FROM {s}.data_keys WHERE tenant = $1 AND brand = $2 AND user_id = $3`),
		deleteSubject:  r.Replace(`DELETE FROM {s}.subjects WHERE tenant = $1 AND brand = $2 AND user_id = $3`),
		markPending:    r.Replace(`INSERT INTO {s}.shred_pending DEFAULT VALUES`),
		keyChecks:      r.Replace(`SELECT tenant, wrapped FROM {s}.key_checks`),
		keyCheck:       r.Replace(`SELECT wrapped FROM {s}.key_checks WHERE tenant = $1`),
		insertKeyCheck: r.Replace(`INSERT INTO {s}.key_checks (tenant, wrapped) VALUES ($1, $2) ON CONFLICT DO NOTHING`),
	}
}

var keyCheckAD = []byte("blindpost-keycheck-v1")

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// minServerVersion is PostgreSQL 13: xid8 and pg_current_xact_id.
const minServerVersion = 130000

// Open connects to the database at dsn (a postgres:// URL or key=value
// string, as pgx takes it), creates or migrates the schema, and verifies
// the key checks of the tenants already stored. It fails with an error
// matching vault.ErrUnavailable if the server cannot be reached, and with
// one matching vault.ErrCorrupt if kp does not hold the key the records
// were sealed with.
func Open(ctx context.Context, dsn string, kp vault.KeyProvider, opts Options) (*Store, error) {
	if kp == nil {
		return nil, errors.New("postgres: nil key provider")
	}
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if !schemaName.MatchString(schema) {
		return nil, fmt.Errorf("postgres: schema %q: want 1-63 characters of [a-z0-9_], not starting with a digit", schema)
	}
	s := &Store{
		kp:           kp,
		tokenVersion: opts.TokenVersion,
		shredOnErase: opts.ShredOnErase,
		lockTimeout:  opts.ShredLockTimeout,
		log:          opts.Logger,
		schema:       pgx.Identifier{schema}.Sanitize(),
		checked:      map[string]bool{},
	}
	s.q = newQueries(s.schema)
	s.rq = newRewrapQueries(s.schema)
	s.tq = newRetokenQueries(s.schema)
	h := fnv.New64a()
	h.Write([]byte("blindpost-vault-schema\x00" + schema))
	s.lockKey = int64(h.Sum64())
	if s.tokenVersion == 0 {
		s.tokenVersion = kp.TokenVersion()
	}
	var err error
	if s.extraTokens, err = vault.CheckTokenVersions(s.tokenVersion, opts.ExtraTokenVersions); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.lockTimeout <= 0 {
		s.lockTimeout = 2 * time.Second
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: dsn: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "blindpost-vault"
	}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := s.open(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return s, nil
}

func (s *Store) open(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return dbErr("connect", err)
	}
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&v); err != nil {
		return dbErr("server version", err)
	}
	if v < minServerVersion {
		return fmt.Errorf("server version %d: need PostgreSQL 13 or newer", v)
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	return s.verifyKeyChecks(ctx)
}

// migrate applies the migrations this schema lacks. An advisory lock
// serialises nodes that start at the same time.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return dbErr("migrate", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
		return dbErr("migrate: lock", err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+s.schema); err != nil {
		return dbErr("migrate: create schema", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.schema+`.schema_version (
		version    int         PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return dbErr("migrate", err)
	}
	var cur int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+s.schema+`.schema_version`).Scan(&cur); err != nil {
		return dbErr("migrate", err)
	}
	if cur > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary's %d", cur, len(migrations))
	}
	for v := cur + 1; v <= len(migrations); v++ {
		if _, err := tx.Exec(ctx, strings.ReplaceAll(migrations[v-1], "{s}", s.schema)); err != nil {
			return dbErr(fmt.Sprintf("migrate to version %d", v), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.schema+`.schema_version (version) VALUES ($1)`, v); err != nil {
			return dbErr(fmt.Sprintf("migrate to version %d", v), err)
		}
	}
	return dbErr("migrate: commit", tx.Commit(ctx))
}

// verifyKeyChecks unwraps every tenant's key check. A check that fails to
// authenticate means the wrong key; a provider that is merely unavailable
// (a sealed remote KMS) does not stop the gateway from starting.
func (s *Store) verifyKeyChecks(ctx context.Context) error {
	rows, err := s.pool.Query(ctx, s.q.keyChecks)
	if err != nil {
		return dbErr("key checks", err)
	}
	type check struct {
		tenant  string
		wrapped []byte
	}
	checks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (check, error) {
		var c check
		return c, r.Scan(&c.tenant, &c.wrapped)
	})
	if err != nil {
		return dbErr("key checks", err)
	}
	for _, c := range checks {
		err := s.unwrapCheck(ctx, c.tenant, c.wrapped)
		switch {
		case errors.Is(err, vault.ErrCorrupt):
			return fmt.Errorf("tenant %q: %w (wrong key?)", c.tenant, err)
		case err != nil:
			s.log.Warn("vault key check skipped", "tenant", c.tenant, "err", err)
		}
	}
	return nil
}

func (s *Store) unwrapCheck(ctx context.Context, tenant string, wrapped []byte) error {
	v, err := s.kp.Unwrap(ctx, tenant, wrapped, keyCheckAD)
	if err != nil {
		return err
	}
	clear(v)
	s.mu.Lock()
	s.checked[tenant] = true
	s.mu.Unlock()
	return nil
}

// ensureKeyCheck writes the tenant's key check on its first Put, or
// verifies the one already there (perhaps written by another node).
func (s *Store) ensureKeyCheck(ctx context.Context, tenant string) error {
	s.mu.Lock()
	done := s.checked[tenant]
	s.mu.Unlock()
	if done {
		return nil
	}
	var wrapped []byte
	err := s.pool.QueryRow(ctx, s.q.keyCheck, tenant).Scan(&wrapped)
	switch {
	case err == nil:
		return s.unwrapCheck(ctx, tenant, wrapped)
	case !errors.Is(err, pgx.ErrNoRows):
		return dbErr("key check", err)
	}
	v := make([]byte, 32)
	if _, err := rand.Read(v); err != nil {
		return err
	}
	wrapped, err = s.kp.Wrap(ctx, tenant, v, keyCheckAD)
	clear(v)
	if err != nil {
		return fmt.Errorf("key check: %w", err)
	}
	if _, err := s.pool.Exec(ctx, s.q.insertKeyCheck, tenant, wrapped); err != nil {
		return dbErr("key check", err)
	}
	// Another node may have won the insert; check the stored value.
	if err := s.pool.QueryRow(ctx, s.q.keyCheck, tenant).Scan(&wrapped); err != nil {
		return dbErr("key check", err)
	}
	return s.unwrapCheck(ctx, tenant, wrapped)
}

// errConflict: the row changed between reading and writing it.
var errConflict = errors.New("concurrent update")

const maxPutAttempts = 8

// Put normalises and seals rec under a fresh data key, bumps the record
// version, keeps the subject's pseudonym (or makes one on first Put) and
// replaces the subject's token index entries (under the pinned token key
// version and every extra one), all in one transaction that
// holds the subject's row lock (SELECT ... FOR UPDATE) from the read of
// the old version to the commit, so Puts of one subject from several nodes
// queue up instead of overwriting each other. The key-provider calls that
// open the old row and wrap the new data key run inside that transaction:
// with a remote provider, a Put holds one pooled connection and that one
// row's lock for their latency; readers are never blocked. Two nodes
// creating the same subject at once race on the insert; the loser starts
// over, now finding the row to lock.
func (s *Store) Put(ctx context.Context, ref vault.Ref, rec vault.Record) (vault.Subject, error) {
	if err := ref.Validate(); err != nil {
		return vault.Subject{}, fmt.Errorf("postgres: put: %w", err)
	}
	rec.Pseudonym = ""
	rec, err := rec.Normalize()
	if err != nil {
		return vault.Subject{}, fmt.Errorf("postgres: put: %w", err)
	}
	if err := s.ensureKeyCheck(ctx, ref.Tenant); err != nil {
		return vault.Subject{}, fmt.Errorf("postgres: put: %w", err)
	}
	tokens, index, err := vault.IndexTokens(ctx, s.kp, ref.Tenant, s.tokenVersion, s.extraTokens, rec)
	if err != nil {
		return vault.Subject{}, fmt.Errorf("postgres: put: %w", err)
	}
	lock := &s.subjectLocks[subjectLockIndex(ref)]
	lock.Lock()
	defer lock.Unlock()
	var pseudonym string
	for range maxPutAttempts {
		pseudonym, err = s.put(ctx, ref, rec, index)
		if !errors.Is(err, errConflict) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, errConflict) {
			err = fmt.Errorf("%w: %w", vault.ErrUnavailable, err)
		}
		return vault.Subject{}, fmt.Errorf("postgres: put: %w", err)
	}
	return vault.Subject{Ref: ref, Pseudonym: pseudonym, Tokens: tokens}, nil
}

func (s *Store) put(ctx context.Context, ref vault.Ref, rec vault.Record, toks []string) (string, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", dbErr("begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Lock the subject's row, then read it and its data key in a second
	// statement: under READ COMMITTED that one takes a fresh snapshot
	// once the lock is ours, so it sees the row and the key a concurrent
	// Put committed. (One statement with FOR UPDATE would re-read only
	// the locked row, and pair the new record with the old key.)
	b := &pgx.Batch{}
	b.Queue(s.q.lockSubject, ref.Tenant, ref.Brand, ref.User)
	b.Queue(s.q.load, ref.Tenant, ref.Brand, ref.User)
	br := tx.SendBatch(ctx, b)
	_, err = br.Exec()
	if err != nil {
		br.Close()
		return "", dbErr("lock record", err)
	}
	r, err := scanRow(br.QueryRow())
	if cerr := br.Close(); cerr != nil && err == nil {
		err = dbErr("read record", cerr)
	}
	var cur int64 // 0: no row yet
	switch {
	case err == nil:
		old, err := s.openRow(ctx, ref, r)
		if err != nil {
			return "", err
		}
		rec.Pseudonym = old.Pseudonym
		cur = r.version
	case !errors.Is(err, vault.ErrNotFound):
		return "", err
	}
	if rec.Pseudonym == "" {
		p, err := vault.NewPseudonym(rand.Reader)
		if err != nil {
			return "", err
		}
		rec.Pseudonym = p
	}
	wrapped, sealed, err := s.seal(ctx, ref, cur+1, rec)
	if err != nil {
		return "", err
	}

	b = &pgx.Batch{}
	if cur == 0 {
		b.Queue(s.q.insertSubject, ref.Tenant, ref.Brand, ref.User, sealed)
	} else {
		b.Queue(s.q.updateSubject, ref.Tenant, ref.Brand, ref.User, cur, sealed)
	}
	b.Queue(s.q.upsertKey, ref.Tenant, ref.Brand, ref.User, wrapped)
	b.Queue(s.q.deleteTokens, ref.Tenant, ref.Brand, ref.User)
	b.Queue(s.q.insertTokens, ref.Tenant, ref.Brand, ref.User, toks)
	br = tx.SendBatch(ctx, b)
	tag, err := br.Exec()
	var pe *pgconn.PgError
	if cur == 0 && errors.As(err, &pe) && pe.Code == "23505" {
		// Another node created the subject since our lock found no row
		// to lock. The error aborted the statements queued after this
		// one; start over, now finding the row to lock.
		br.Close()
		return "", errConflict
	}
	if err == nil && tag.RowsAffected() != 1 {
		br.Close()
		return "", errConflict // cannot happen while we hold the row lock
	}
	for i := 1; err == nil && i < b.Len(); i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", dbErr("write record", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return "", dbErr("commit", err)
	}
	return rec.Pseudonym, nil
}

func subjectLockIndex(ref vault.Ref) int {
	h := fnv.New32a()
	h.Write(vault.AssociatedData(ref, 0))
	return int(h.Sum32() % 64)
}

type row struct {
	version         int64
	wrapped, sealed []byte
}

func (s *Store) load(ctx context.Context, ref vault.Ref) (row, error) {
	return scanRow(s.pool.QueryRow(ctx, s.q.load, ref.Tenant, ref.Brand, ref.User))
}

func scanRow(q pgx.Row) (row, error) {
	var r row
	err := q.Scan(&r.version, &r.wrapped, &r.sealed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return row{}, vault.ErrNotFound
	case err != nil:
		return row{}, dbErr("read record", err)
	case r.wrapped == nil:
		return row{}, fmt.Errorf("read record: %w: data key missing", vault.ErrCorrupt)
	}
	return r, nil
}

func (s *Store) seal(ctx context.Context, ref vault.Ref, version int64, rec vault.Record) (wrapped, sealed []byte, err error) {
	return vault.SealRecord(ctx, s.kp, ref, version, rec)
}

func (s *Store) openRow(ctx context.Context, ref vault.Ref, r row) (vault.Record, error) {
	return vault.OpenRecord(ctx, s.kp, ref, r.version, r.wrapped, r.sealed)
}

// Resolve opens the record of ref.
func (s *Store) Resolve(ctx context.Context, ref vault.Ref) (vault.Record, error) {
	if err := ref.Validate(); err != nil {
		return vault.Record{}, fmt.Errorf("postgres: resolve: %w", err)
	}
	r, err := s.load(ctx, ref)
	if err != nil {
		return vault.Record{}, fmt.Errorf("postgres: resolve: %w", err)
	}
	rec, err := s.openRow(ctx, ref, r)
	if err != nil {
		return vault.Record{}, fmt.Errorf("postgres: resolve: %w", err)
	}
	return rec, nil
}

// Lookup returns the subject of brand whose record holds the value token
// stands for, under whichever token key version the token names, as long
// as the store indexes it. A token held by two subjects of the brand is refused with an
// error matching vault.ErrAmbiguous and vault.ErrInvalid: the gateway cannot
// tell whose flags apply.
func (s *Store) Lookup(ctx context.Context, tenant, brand, token string) (vault.Ref, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return vault.Ref{}, fmt.Errorf("postgres: lookup: tenant: %w", err)
	}
	if err := vault.ValidateID(brand); err != nil {
		return vault.Ref{}, fmt.Errorf("postgres: lookup: brand: %w", err)
	}
	if _, _, err := vault.ParseToken(token); err != nil {
		return vault.Ref{}, fmt.Errorf("postgres: lookup: %w", err)
	}
	rows, err := s.pool.Query(ctx, s.q.lookup, tenant, brand, token)
	if err != nil {
		return vault.Ref{}, fmt.Errorf("postgres: lookup: %w", dbErr("query", err))
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return vault.Ref{}, fmt.Errorf("postgres: lookup: %w", dbErr("query", err))
	}
	switch len(users) {
	case 0:
		return vault.Ref{}, fmt.Errorf("postgres: lookup: %w", vault.ErrNotFound)
	case 1:
		return vault.Ref{Tenant: tenant, Brand: brand, User: users[0]}, nil
	}
	return vault.Ref{}, fmt.Errorf("postgres: lookup: %w: %w", vault.ErrInvalid, vault.ErrAmbiguous)
}

// Tokenize returns the token of value under the pinned token key version.
func (s *Store) Tokenize(ctx context.Context, tenant string, kind vault.Kind, value string) (string, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return "", fmt.Errorf("postgres: tokenize: tenant: %w", err)
	}
	tok, err := vault.Tokenize(ctx, s.kp, tenant, s.tokenVersion, kind, value)
	if err != nil {
		return "", fmt.Errorf("postgres: tokenize: %w", err)
	}
	return tok, nil
}

// Erase deletes the subject's token index entries, its wrapped data key
// and its sealed record in one transaction, and records the erasure for
// Shred: until Shred has rewritten the tables, the deleted rows remain as
// dead tuples in the database files. With Options.ShredOnErase, Erase runs
// Shred itself before it returns.
func (s *Store) Erase(ctx context.Context, ref vault.Ref) error {
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("postgres: erase: %w", err)
	}
	if err := s.erase(ctx, ref); err != nil {
		return fmt.Errorf("postgres: erase: %w", err)
	}
	if s.shredOnErase {
		// The erase is committed: finish the shred even if the caller
		// has given up waiting. A failure leaves the erasure pending for
		// the next Shred.
		if err := s.Shred(context.WithoutCancel(ctx)); err != nil {
			s.log.Warn("vault shred after erase incomplete; the next Shred retries", "err", err)
		}
	}
	return nil
}

func (s *Store) erase(ctx context.Context, ref vault.Ref) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return dbErr("begin", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Lock the subject's row first, as Put does: a Put holding it would
	// otherwise wait for the data key this transaction deleted while this
	// one waits for the row, a deadlock PostgreSQL breaks after a second
	// by failing one of them.
	b := &pgx.Batch{}
	b.Queue(s.q.lockSubject, ref.Tenant, ref.Brand, ref.User)
	b.Queue(s.q.deleteTokens, ref.Tenant, ref.Brand, ref.User)
	b.Queue(s.q.deleteKey, ref.Tenant, ref.Brand, ref.User)
	b.Queue(s.q.deleteSubject, ref.Tenant, ref.Brand, ref.User)
	b.Queue(s.q.markPending)
	br := tx.SendBatch(ctx, b)
	var tag pgconn.CommandTag
	for i := 0; err == nil && i < b.Len(); i++ {
		var t pgconn.CommandTag
		t, err = br.Exec()
		if i == 3 {
			tag = t
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return dbErr("delete", err)
	}
	if tag.RowsAffected() == 0 {
		return vault.ErrNotFound
	}
	return dbErr("commit", tx.Commit(ctx))
}

// Close closes the connection pool.
func (s *Store) Close() error {
	if s.pool != nil {
		s.pool.Close()
	}
	return nil
}

// dbErr wraps a database error with op. Failures of the connection, and
// server states that pass (shutdown, failover to a read-only standby, lock
// or serialisation conflicts, too many connections), are retryable, so they
// match vault.ErrUnavailable. Server messages are left out of the text:
// some quote the values of a statement.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		se := &serverError{pe}
		if retryableCode(pe.Code) {
			return fmt.Errorf("%s: %w: %w", op, vault.ErrUnavailable, se)
		}
		return fmt.Errorf("%s: %w", op, se)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w: %w", op, vault.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func retryableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), // connection exception
		strings.HasPrefix(code, "53"),    // insufficient resources
		strings.HasPrefix(code, "57P"),   // admin or crash shutdown, cannot connect now
		code == "57014",                  // query_canceled (statement_timeout)
		code == "40001", code == "40P01", // serialization failure, deadlock
		code == "55P03", // lock_not_available
		code == "25006": // read_only_sql_transaction: a standby after failover
		return true
	}
	return false
}

// serverError is a PostgreSQL error reduced to its code and the names of
// the objects involved; Unwrap gives the full *pgconn.PgError to errors.As.
type serverError struct{ pe *pgconn.PgError }

func (e *serverError) Error() string {
	msg := "server error SQLSTATE " + e.pe.Code
	for _, n := range [...]struct{ k, v string }{
		{"table", e.pe.TableName}, {"column", e.pe.ColumnName}, {"constraint", e.pe.ConstraintName},
	} {
		if n.v != "" {
			msg += " " + n.k + " " + n.v
		}
	}
	// Classes whose messages name objects, never values: schema and
	// privilege errors, authentication, invalid schema name.
	switch class := e.pe.Code[:min(2, len(e.pe.Code))]; class {
	case "42", "28", "3F":
		msg += ": " + e.pe.Message
	}
	return msg
}

func (e *serverError) Unwrap() error { return e.pe }
