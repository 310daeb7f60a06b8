// Package embedded is the default vault backend: one SQLite file holding
// sealed records and the token index, keyed by a LocalKeyProvider (a key
// file or an Argon2id passphrase) or any other vault.KeyProvider.
//
// It runs on the operator side, inside the gateway. Records are sealed with
// XChaCha20-Poly1305 under a fresh per-subject data key before they reach
// SQLite, and the data key is wrapped by the tenant's key-encryption key,
// both bound to the subject and record version, so the file never holds PII
// in clear and a row moved to another subject does not open. Erase deletes
// the row with secure_delete on and truncates the WAL, so no old page image
// of the record or its wrapped key stays in the live files. Backups and
// filesystem snapshots taken before an erase still hold the sealed row
// until the KEK version that wrapped its data key is destroyed: rotate the
// KEK (RotateKeyFile), re-wrap every tenant's keys (Store.Rewrap, which
// leaves no old wrapped key in the live files either), and, once no backup
// from before the re-wrap needs restoring, retire the old version
// (RetireKeyVersion): that destroys every copy of the keys it wrapped,
// erased subjects' included. GenerateKeyFile describes the key file.
package embedded

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"modernc.org/sqlite"

	"github.com/blindpost/blindpost/vault"
)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// TokenVersion pins the token key version of new tokens. Zero means
	// the key provider's TokenVersion.
	TokenVersion int
	// ExtraTokenVersions are token key versions Put indexes each record
	// under as well, during a re-tokenisation (vault.Retokenizer): tokens
	// of every indexed version resolve. Empty otherwise.
	ExtraTokenVersions []int
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection or process. Zero means 5 seconds.
	BusyTimeout time.Duration
	// Logger receives operational warnings (never PII). Nil discards them.
	Logger *slog.Logger
}

// Store is a vault.Store in one SQLite file.
type Store struct {
	w            *sql.DB // one connection: SQLite has one writer anyway
	r            *sql.DB // readers, query_only
	loadStmt     *sql.Stmt
	kp           vault.KeyProvider
	tokenVersion int
	extraTokens  []int // ExtraTokenVersions
	log          *slog.Logger

	// subjectLocks serialise Puts of one subject within this process, so
	// they do not race to create its pseudonym; the version check in put
	// covers other processes.
	subjectLocks [64]sync.Mutex

	mu       sync.Mutex
	checked  map[string]bool // tenants whose key check this process has verified
	walDirty bool            // an erase could not truncate the WAL yet
}

var _ vault.Store = (*Store)(nil)

const schemaVersion = 1

const schema = `
CREATE TABLE subjects (
	tenant        TEXT    NOT NULL,
	brand         TEXT    NOT NULL,
	user          TEXT    NOT NULL,
	version       INTEGER NOT NULL CHECK (version > 0),
	wrapped_key   BLOB    NOT NULL,
	sealed_record BLOB    NOT NULL,
	PRIMARY KEY (tenant, brand, user)
);
CREATE TABLE tokens (
	tenant TEXT NOT NULL,
	brand  TEXT NOT NULL,
	token  TEXT NOT NULL,
	user   TEXT NOT NULL,
	PRIMARY KEY (tenant, brand, token, user),
	FOREIGN KEY (tenant, brand, user) REFERENCES subjects (tenant, brand, user) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tokens_by_subject ON tokens (tenant, brand, user);
-- One random value per tenant, wrapped under the tenant's key, so that
-- Open notices a wrong key file or passphrase before anything is written.
CREATE TABLE key_checks (
	tenant  TEXT NOT NULL PRIMARY KEY,
	wrapped BLOB NOT NULL
) WITHOUT ROWID;
`

var keyCheckAD = []byte("blindpost-keycheck-v1")

// Open opens or creates the store at path. It fails with an error matching
// vault.ErrCorrupt if kp does not hold the key the file's records were
// sealed with.
func Open(path string, kp vault.KeyProvider, opts Options) (*Store, error) {
	if kp == nil {
		return nil, errors.New("embedded: nil key provider")
	}
	s := &Store{
		kp:           kp,
		tokenVersion: opts.TokenVersion,
		log:          opts.Logger,
		checked:      map[string]bool{},
	}
	if s.tokenVersion == 0 {
		s.tokenVersion = kp.TokenVersion()
	}
	var err error
	if s.extraTokens, err = vault.CheckTokenVersions(s.tokenVersion, opts.ExtraTokenVersions); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.open(path, opts.BusyTimeout); err != nil {
		s.Close()
		return nil, fmt.Errorf("embedded: open %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) open(path string, busy time.Duration) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	// Create the file ourselves: SQLite gives the -wal and -shm files the
	// mode of the database file, so all three stay private.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()

	if busy <= 0 {
		busy = 5 * time.Second
	}
	common := url.Values{}
	common.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	common.Add("_pragma", "foreign_keys(ON)")
	dsn := func(extra ...string) string {
		q := url.Values{}
		for k, v := range common {
			q[k] = append([]string(nil), v...)
		}
		for i := 0; i < len(extra); i += 2 {
			q.Add(extra[i], extra[i+1])
		}
		return (&url.URL{Scheme: "file", Path: abs}).String() + "?" + q.Encode()
	}
	s.w, err = sql.Open("sqlite", dsn(
		"_pragma", "journal_mode(WAL)",
		"_pragma", "synchronous(FULL)",
		"_pragma", "secure_delete(ON)",
		"_txlock", "immediate",
	))
	if err != nil {
		return err
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxIdleTime(0)
	s.r, err = sql.Open("sqlite", dsn("_pragma", "query_only(ON)"))
	if err != nil {
		return err
	}
	s.r.SetMaxOpenConns(4)
	s.r.SetMaxIdleConns(4)

	ctx := context.Background()
	if err := s.checkPragmas(ctx); err != nil {
		return err
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	// Prepared once per reader connection rather than parsed per call.
	if s.loadStmt, err = s.r.PrepareContext(ctx, loadQuery); err != nil {
		return dbErr("prepare", err)
	}
	return s.verifyKeyChecks(ctx)
}

// checkPragmas makes sure the settings erasure relies on took effect.
func (s *Store) checkPragmas(ctx context.Context) error {
	for _, p := range []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"synchronous", "2"},
		{"secure_delete", "1"},
		{"foreign_keys", "1"},
	} {
		var got string
		if err := s.w.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil {
			return fmt.Errorf("pragma %s: %w", p.name, err)
		}
		if got != p.want {
			return fmt.Errorf("pragma %s is %q, want %q", p.name, got, p.want)
		}
	}
	return nil
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dbErr("migrate", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return dbErr("migrate", err)
	}
	var v sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(version) FROM schema_version`).Scan(&v); err != nil {
		return dbErr("migrate", err)
	}
	switch {
	case !v.Valid:
		if _, err := tx.ExecContext(ctx, schema); err != nil {
			return dbErr("create schema", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, schemaVersion); err != nil {
			return dbErr("create schema", err)
		}
	case v.Int64 > schemaVersion:
		return fmt.Errorf("schema version %d is newer than this binary's %d", v.Int64, schemaVersion)
	}
	return dbErr("migrate", tx.Commit())
}

// verifyKeyChecks unwraps every tenant's key check. A check that fails to
// authenticate means the wrong key; a provider that is merely unavailable
// (a sealed remote KMS) does not stop the gateway from starting.
func (s *Store) verifyKeyChecks(ctx context.Context) error {
	rows, err := s.r.QueryContext(ctx, `SELECT tenant, wrapped FROM key_checks`)
	if err != nil {
		return dbErr("key checks", err)
	}
	type check struct {
		tenant  string
		wrapped []byte
	}
	var checks []check
	for rows.Next() {
		var c check
		if err := rows.Scan(&c.tenant, &c.wrapped); err != nil {
			rows.Close()
			return dbErr("key checks", err)
		}
		checks = append(checks, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return dbErr("key checks", err)
	}
	for _, c := range checks {
		err := s.unwrapCheck(ctx, c.tenant, c.wrapped)
		switch {
		case errors.Is(err, vault.ErrCorrupt):
			return fmt.Errorf("tenant %q: %w (wrong key file or passphrase?)", c.tenant, err)
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
// verifies the one already there.
func (s *Store) ensureKeyCheck(ctx context.Context, tenant string) error {
	s.mu.Lock()
	done := s.checked[tenant]
	s.mu.Unlock()
	if done {
		return nil
	}
	var wrapped []byte
	err := s.r.QueryRowContext(ctx, `SELECT wrapped FROM key_checks WHERE tenant = ?`, tenant).Scan(&wrapped)
	switch {
	case err == nil:
		return s.unwrapCheck(ctx, tenant, wrapped)
	case !errors.Is(err, sql.ErrNoRows):
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
	if _, err := s.w.ExecContext(ctx, `INSERT OR IGNORE INTO key_checks (tenant, wrapped) VALUES (?, ?)`, tenant, wrapped); err != nil {
		return dbErr("key check", err)
	}
	// Another process may have won the insert; check the stored value.
	if err := s.r.QueryRowContext(ctx, `SELECT wrapped FROM key_checks WHERE tenant = ?`, tenant).Scan(&wrapped); err != nil {
		return dbErr("key check", err)
	}
	return s.unwrapCheck(ctx, tenant, wrapped)
}

// errConflict: the row changed between reading and writing it.
var errConflict = errors.New("concurrent update")

const maxPutAttempts = 8

// Put normalises and seals rec under a fresh data key, bumps the record
// version, keeps the subject's pseudonym (or makes one on first Put) and
// replaces the subject's token index entries, under the pinned token key
// version and every extra one (Options.ExtraTokenVersions); the Subject
// reports the pinned version's. Key-provider calls happen
// outside the write transaction; a concurrent Put of the same subject makes
// this one start over.
func (s *Store) Put(ctx context.Context, ref vault.Ref, rec vault.Record) (vault.Subject, error) {
	if err := ref.Validate(); err != nil {
		return vault.Subject{}, fmt.Errorf("embedded: put: %w", err)
	}
	rec.Pseudonym = ""
	rec, err := rec.Normalize()
	if err != nil {
		return vault.Subject{}, fmt.Errorf("embedded: put: %w", err)
	}
	if err := s.ensureKeyCheck(ctx, ref.Tenant); err != nil {
		return vault.Subject{}, fmt.Errorf("embedded: put: %w", err)
	}
	tokens, index, err := vault.IndexTokens(ctx, s.kp, ref.Tenant, s.tokenVersion, s.extraTokens, rec)
	if err != nil {
		return vault.Subject{}, fmt.Errorf("embedded: put: %w", err)
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
		return vault.Subject{}, fmt.Errorf("embedded: put: %w", err)
	}
	s.retryTruncate()
	return vault.Subject{Ref: ref, Pseudonym: pseudonym, Tokens: tokens}, nil
}

func (s *Store) put(ctx context.Context, ref vault.Ref, rec vault.Record, tokens []string) (string, error) {
	version := int64(1)
	switch cur, err := s.load(ctx, ref); {
	case err == nil:
		old, err := s.openRow(ctx, ref, cur)
		if err != nil {
			return "", err
		}
		rec.Pseudonym = old.Pseudonym
		version = cur.version + 1
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
	wrapped, sealed, err := s.seal(ctx, ref, version, rec)
	if err != nil {
		return "", err
	}

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return "", dbErr("begin", err)
	}
	defer tx.Rollback()
	var cur int64
	err = tx.QueryRowContext(ctx, `SELECT version FROM subjects WHERE tenant = ? AND brand = ? AND user = ?`,
		ref.Tenant, ref.Brand, ref.User).Scan(&cur)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", dbErr("read version", err)
	}
	if cur != version-1 {
		return "", errConflict
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO subjects (tenant, brand, user, version, wrapped_key, sealed_record) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant, brand, user) DO UPDATE SET
			version = excluded.version, wrapped_key = excluded.wrapped_key, sealed_record = excluded.sealed_record`,
		ref.Tenant, ref.Brand, ref.User, version, wrapped, sealed); err != nil {
		return "", dbErr("write record", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE tenant = ? AND brand = ? AND user = ?`,
		ref.Tenant, ref.Brand, ref.User); err != nil {
		return "", dbErr("drop stale tokens", err)
	}
	for _, tok := range tokens {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tokens (tenant, brand, token, user) VALUES (?, ?, ?, ?)`,
			ref.Tenant, ref.Brand, tok, ref.User); err != nil {
			return "", dbErr("index token", err)
		}
	}
	if err := tx.Commit(); err != nil {
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

const loadQuery = `SELECT version, wrapped_key, sealed_record FROM subjects WHERE tenant = ? AND brand = ? AND user = ?`

// load reads the row of ref. The read is one primary-key lookup: it runs
// without ctx's cancellation, which would cost the driver a goroutine per
// call (a fifth of a resolve), so once started it may outlast ctx by at
// most the busy timeout, when another connection holds a lock.
func (s *Store) load(ctx context.Context, ref vault.Ref) (row, error) {
	if err := ctx.Err(); err != nil {
		return row{}, err
	}
	var r row
	err := s.loadStmt.QueryRowContext(context.WithoutCancel(ctx), ref.Tenant, ref.Brand, ref.User).Scan(&r.version, &r.wrapped, &r.sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return row{}, vault.ErrNotFound
	}
	return r, dbErr("read record", err)
}

func (s *Store) seal(ctx context.Context, ref vault.Ref, version int64, rec vault.Record) (wrapped, sealed []byte, err error) {
	return vault.SealRecord(ctx, s.kp, ref, version, rec)
}

// openRow is vault.OpenRecord with a faster JSON decoder (decodeRecord):
// it unwraps the data key and opens a record sealed for ref and version,
// clearing the data key and the plaintext before it returns.
func (s *Store) openRow(ctx context.Context, ref vault.Ref, r row) (vault.Record, error) {
	ad := vault.AssociatedData(ref, r.version)
	dk, err := s.kp.Unwrap(ctx, ref.Tenant, r.wrapped, ad)
	if err != nil {
		return vault.Record{}, fmt.Errorf("open record: %w", err)
	}
	defer clear(dk)
	pt, err := vault.Open(dk, r.sealed, ad)
	if err != nil {
		return vault.Record{}, fmt.Errorf("open record: %w", err)
	}
	defer clear(pt)
	rec, err := decodeRecord(pt)
	if err != nil {
		return vault.Record{}, fmt.Errorf("open record: %w: undecodable", vault.ErrCorrupt)
	}
	return rec, nil
}

// Resolve opens the record of ref.
func (s *Store) Resolve(ctx context.Context, ref vault.Ref) (vault.Record, error) {
	if err := ref.Validate(); err != nil {
		return vault.Record{}, fmt.Errorf("embedded: resolve: %w", err)
	}
	r, err := s.load(ctx, ref)
	if err != nil {
		return vault.Record{}, fmt.Errorf("embedded: resolve: %w", err)
	}
	rec, err := s.openRow(ctx, ref, r)
	if err != nil {
		return vault.Record{}, fmt.Errorf("embedded: resolve: %w", err)
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
		return vault.Ref{}, fmt.Errorf("embedded: lookup: tenant: %w", err)
	}
	if err := vault.ValidateID(brand); err != nil {
		return vault.Ref{}, fmt.Errorf("embedded: lookup: brand: %w", err)
	}
	if _, _, err := vault.ParseToken(token); err != nil {
		return vault.Ref{}, fmt.Errorf("embedded: lookup: %w", err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT user FROM tokens WHERE tenant = ? AND brand = ? AND token = ? LIMIT 2`,
		tenant, brand, token)
	if err != nil {
		return vault.Ref{}, fmt.Errorf("embedded: lookup: %w", dbErr("query", err))
	}
	defer rows.Close()
	var users []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return vault.Ref{}, fmt.Errorf("embedded: lookup: %w", dbErr("scan", err))
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return vault.Ref{}, fmt.Errorf("embedded: lookup: %w", dbErr("query", err))
	}
	switch len(users) {
	case 0:
		return vault.Ref{}, fmt.Errorf("embedded: lookup: %w", vault.ErrNotFound)
	case 1:
		return vault.Ref{Tenant: tenant, Brand: brand, User: users[0]}, nil
	}
	return vault.Ref{}, fmt.Errorf("embedded: lookup: %w: %w", vault.ErrInvalid, vault.ErrAmbiguous)
}

// Tokenize returns the token of value under the pinned token key version.
func (s *Store) Tokenize(ctx context.Context, tenant string, kind vault.Kind, value string) (string, error) {
	if err := vault.ValidateID(tenant); err != nil {
		return "", fmt.Errorf("embedded: tokenize: tenant: %w", err)
	}
	tok, err := vault.Tokenize(ctx, s.kp, tenant, s.tokenVersion, kind, value)
	if err != nil {
		return "", fmt.Errorf("embedded: tokenize: %w", err)
	}
	return tok, nil
}

// Erase deletes the subject's row, and with it the only copy of its wrapped
// data key, and its token index entries, in one transaction; then it
// truncates the WAL so no old page image of them stays in the files.
func (s *Store) Erase(ctx context.Context, ref vault.Ref) error {
	if err := ref.Validate(); err != nil {
		return fmt.Errorf("embedded: erase: %w", err)
	}
	if err := s.erase(ctx, ref); err != nil {
		return fmt.Errorf("embedded: erase: %w", err)
	}
	// The erase is committed: finish the truncation even if the caller
	// has given up waiting.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	s.truncateWAL(ctx)
	return nil
}

func (s *Store) erase(ctx context.Context, ref vault.Ref) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return dbErr("begin", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE tenant = ? AND brand = ? AND user = ?`,
		ref.Tenant, ref.Brand, ref.User); err != nil {
		return dbErr("delete tokens", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM subjects WHERE tenant = ? AND brand = ? AND user = ?`,
		ref.Tenant, ref.Brand, ref.User)
	if err != nil {
		return dbErr("delete record", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return dbErr("delete record", err)
	} else if n == 0 {
		return vault.ErrNotFound
	}
	return dbErr("commit", tx.Commit())
}

// truncateWAL checkpoints the WAL into the database file and truncates it
// to zero bytes. It needs readers to let go of old snapshots; if they do
// not within the busy timeout, the next write or Close tries again.
func (s *Store) truncateWAL(ctx context.Context) {
	var busy, logFrames, done int
	err := s.w.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logFrames, &done)
	dirty := err != nil || busy != 0
	s.mu.Lock()
	s.walDirty = dirty
	s.mu.Unlock()
	if dirty {
		s.log.Warn("vault WAL truncation incomplete; will retry", "err", err, "busy", busy)
	}
}

func (s *Store) retryTruncate() {
	s.mu.Lock()
	dirty := s.walDirty
	s.mu.Unlock()
	if dirty {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.truncateWAL(ctx)
	}
}

// Close truncates the WAL if an erase left it pending and closes the file.
func (s *Store) Close() error {
	var errs []error
	if s.loadStmt != nil {
		errs = append(errs, s.loadStmt.Close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		s.retryTruncate()
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}

// dbErr wraps a database error with op. Lock contention that outlasted the
// busy timeout is retryable, so it matches vault.ErrUnavailable.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
			return fmt.Errorf("%s: %w: %w", op, vault.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("%s: %w", op, err)
}
