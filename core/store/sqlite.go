package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// openSQLite opens the file at cfg.Path: one writing connection (SQLite
// has one writer anyway), a pool of read-only ones, and one that
// checkpoints. On error, the caller closes what it opened.
func (s *Store) openSQLite(ctx context.Context, cfg Config) error {
	s.d = sqliteDialect
	s.lockPath = cfg.Path + ".lock"
	switch {
	case cfg.PlayerCache == 0:
		s.cache = newPlayerCache(DefaultPlayerCache)
	case cfg.PlayerCache > 0:
		s.cache = newPlayerCache(cfg.PlayerCache)
	}
	// Owner-only, before SQLite creates it: the -wal and -shm files copy
	// the database file's mode. A file that exists with a wider mode is
	// narrowed: it holds API-key hashes and every player's state.
	f, err := os.OpenFile(cfg.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.log.Warn("store file was readable by others; narrowing it to owner-only", "mode", fi.Mode().Perm().String())
		err = f.Chmod(0o600)
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}

	// A file: URI, so the path is escaped and may hold any character.
	uri := "file:" + (&url.URL{Path: cfg.Path}).EscapedPath() + "?"
	w := url.Values{}
	w.Add("_pragma", "busy_timeout(10000)")
	w.Add("_pragma", "journal_mode(WAL)")
	// Ingest is acknowledged once durable: every commit syncs the WAL.
	w.Add("_pragma", "synchronous(FULL)")
	// Checkpoints run beside the writer (checkpointLoop); the writer
	// checkpoints itself only if they fall far behind (256 MiB of WAL).
	w.Add("_pragma", "wal_autocheckpoint(64000)")
	w.Add("_pragma", "temp_store(MEMORY)")
	// 128 MiB of pages: the eid index of about two million events stays
	// in memory. Past that, each new random eid (UUIDv4) costs a page
	// read as well as a page written.
	w.Add("_pragma", "cache_size(-131072)")
	w.Set("_txlock", "immediate")
	s.db, err = sql.Open("sqlite", uri+w.Encode())
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	s.db.SetMaxOpenConns(1)
	s.db.SetMaxIdleConns(1)
	s.db.SetConnMaxLifetime(0)
	s.db.SetConnMaxIdleTime(0)
	if err := s.migrateSQLite(ctx); err != nil {
		return err
	}
	if err := s.prepareSQLite(ctx); err != nil {
		return err
	}

	readers := cfg.MaxConns
	if readers <= 0 {
		readers = 4
	}
	r := url.Values{}
	r.Add("_pragma", "busy_timeout(10000)")
	r.Add("_pragma", "query_only(1)")
	r.Add("_pragma", "temp_store(MEMORY)")
	s.rdb, err = sql.Open("sqlite", uri+r.Encode())
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	s.rdb.SetMaxOpenConns(readers)
	s.rdb.SetMaxIdleConns(readers)

	c := url.Values{}
	c.Add("_pragma", "busy_timeout(10000)")
	c.Add("_pragma", "synchronous(FULL)")
	s.cdb, err = sql.Open("sqlite", uri+c.Encode())
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	s.cdb.SetMaxOpenConns(1)
	s.startWriter()
	return nil
}

// checkpointEvery is how often checkpointLoop copies the WAL into the
// database file.
const checkpointEvery = 250 * time.Millisecond

// checkpointLoop copies the WAL into the database file on a connection of
// its own, so that the writer's commits never wait for it (a checkpoint
// syncs the database file). PASSIVE: it never blocks the writer nor the
// readers.
func (s *Store) checkpointLoop() {
	defer s.writer.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		if _, err := s.cdb.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			s.log.Warn("store checkpoint failed", "err", err)
		}
	}
}

// sqliteMigrations are SQLite's, applied in order; PRAGMA user_version
// records how many ran. Append, never edit. PostgreSQL has its own list
// (pgMigrations), which must arrive at the same tables. Times are Unix
// milliseconds.
var sqliteMigrations = []string{
	`
CREATE TABLE labels (
	id            TEXT    PRIMARY KEY,
	name          TEXT    NOT NULL,
	firewall_mode TEXT    NOT NULL,
	created       INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE brands (
	label TEXT NOT NULL,
	brand TEXT NOT NULL,
	PRIMARY KEY (label, brand)
) WITHOUT ROWID;

CREATE TABLE event_types (
	label TEXT NOT NULL,
	name  TEXT NOT NULL,
	PRIMARY KEY (label, name)
) WITHOUT ROWID;

-- hash is SHA-256 of the whole key; the key itself is never stored.
-- revoked is when it was revoked, 0 while it is valid.
CREATE TABLE api_keys (
	id      TEXT    PRIMARY KEY,
	label   TEXT    NOT NULL,
	hash    BLOB    NOT NULL,
	created INTEGER NOT NULL,
	revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX api_keys_label ON api_keys (label);

-- Every event ingested, for ever (nothing prunes them yet). seq is the
-- order of arrival; payload is the event's JSON object as stored.
CREATE TABLE events (
	seq            INTEGER PRIMARY KEY,
	label          TEXT    NOT NULL,
	eid            TEXT    NOT NULL,
	event_date     INTEGER NOT NULL,
	ext_brand_id   TEXT    NOT NULL,
	user_ext_id    TEXT    NOT NULL,
	event_type     TEXT    NOT NULL,
	payload        TEXT    NOT NULL,
	skip_cjm       INTEGER NOT NULL,
	user_not_found INTEGER NOT NULL,
	received       INTEGER NOT NULL,
	UNIQUE (label, eid)
);

-- A player exists once a registration or update_profile event named it.
-- properties is a JSON object.
CREATE TABLE players (
	label        TEXT    NOT NULL,
	ext_brand_id TEXT    NOT NULL,
	user_ext_id  TEXT    NOT NULL,
	properties   TEXT    NOT NULL,
	last_online  INTEGER NOT NULL,
	first_seen   INTEGER NOT NULL,
	updated      INTEGER NOT NULL,
	PRIMARY KEY (label, ext_brand_id, user_ext_id)
);

-- What is kept of a refused event: never a value.
CREATE TABLE rejections (
	id     INTEGER PRIMARY KEY,
	label  TEXT    NOT NULL,
	eid    TEXT    NOT NULL,
	reason TEXT    NOT NULL,
	path   TEXT    NOT NULL,
	time   INTEGER NOT NULL
);
CREATE INDEX rejections_label ON rejections (label, id);

CREATE TABLE rejection_counts (
	label  TEXT    NOT NULL,
	reason TEXT    NOT NULL,
	n      INTEGER NOT NULL,
	PRIMARY KEY (label, reason)
) WITHOUT ROWID;

-- The SQL-view connectors' watermarks.
CREATE TABLE checkpoints (
	source  TEXT    PRIMARY KEY,
	value   TEXT    NOT NULL,
	updated INTEGER NOT NULL
) WITHOUT ROWID;
`,
}

func (s *Store) migrateSQLite(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(sqliteMigrations) {
		return fmt.Errorf("schema version %d is newer than this binary (%d)", version, len(sqliteMigrations))
	}
	fresh := version == 0
	for ; version < len(sqliteMigrations); version++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if _, err := tx.ExecContext(ctx, sqliteMigrations[version]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", version+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate to %d: %w", version+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate to %d: %w", version+1, err)
		}
		if !fresh {
			s.log.Info("store schema migrated", "version", version+1)
		}
	}
	return nil
}
