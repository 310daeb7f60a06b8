package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/blindpost/blindpost/internal/pgschema"
)

// DefaultSchema is the PostgreSQL schema of a store whose Config names none.
const DefaultSchema = "blindpost_core"

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// openPostgres opens the store in PostgreSQL: its tables live in
// cfg.Schema, created if missing, migrated under a lock so that nodes
// starting together do not race. On error, the caller closes what it
// opened.
func (s *Store) openPostgres(ctx context.Context, cfg Config) error {
	schema := cmp.Or(cfg.Schema, DefaultSchema)
	if !schemaName.MatchString(schema) {
		return fmt.Errorf("%w: schema %q: want 1-63 characters of [a-z0-9_], not starting with a digit", ErrInvalid, schema)
	}
	pc, err := pgx.ParseConfig(cfg.DSN) // its errors leave the password out
	if err != nil {
		return err
	}
	// Every statement names its tables unqualified: the schema is the
	// only one on the search path of the store's connections.
	pc.RuntimeParams["search_path"] = schema
	if _, ok := pc.RuntimeParams["application_name"]; !ok {
		pc.RuntimeParams["application_name"] = "blindpost-core"
	}
	conns := cfg.MaxConns
	if conns <= 0 {
		conns = 8
	}
	s.d = postgresDialect
	s.db = stdlib.OpenDB(*pc)
	s.db.SetMaxOpenConns(conns)
	s.db.SetMaxIdleConns(conns)
	s.rdb = s.db
	return s.migratePostgres(ctx, schema)
}

// pgMigrations are PostgreSQL's, applied in order, each once, in one
// transaction with the schema_version row that records it. Append, never
// edit. They arrive at the tables SQLite's migrations arrive at; {s} stands
// for the quoted schema name. JSON is stored as json, not jsonb: as sent
// (SQLite keeps the text too), and json accepts the \u0000 escape that
// jsonb refuses, which would fail a whole batch.
var pgMigrations = []string{
	`
CREATE TABLE {s}.labels (
	id            text   PRIMARY KEY,
	name          text   NOT NULL,
	firewall_mode text   NOT NULL,
	created       bigint NOT NULL
);

CREATE TABLE {s}.brands (
	label text NOT NULL,
	brand text NOT NULL,
	PRIMARY KEY (label, brand)
);

CREATE TABLE {s}.event_types (
	label text NOT NULL,
	name  text NOT NULL,
	PRIMARY KEY (label, name)
);

CREATE TABLE {s}.api_keys (
	id      text   PRIMARY KEY,
	label   text   NOT NULL,
	hash    bytea  NOT NULL,
	created bigint NOT NULL,
	revoked bigint NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_label ON {s}.api_keys (label);

-- seq is the order of arrival of each node's events; transactions commit
-- out of seq order, so it is no cursor across nodes.
CREATE TABLE {s}.events (
	seq            bigint  GENERATED ALWAYS AS IDENTITY,
	label          text    NOT NULL,
	eid            text    NOT NULL,
	event_date     bigint  NOT NULL,
	ext_brand_id   text    NOT NULL,
	user_ext_id    text    NOT NULL,
	event_type     text    NOT NULL,
	payload        json    NOT NULL,
	skip_cjm       boolean NOT NULL,
	user_not_found boolean NOT NULL,
	received       bigint  NOT NULL,
	PRIMARY KEY (label, eid)
);

CREATE TABLE {s}.players (
	label        text   NOT NULL,
	ext_brand_id text   NOT NULL,
	user_ext_id  text   NOT NULL,
	properties   json   NOT NULL,
	last_online  bigint NOT NULL,
	first_seen   bigint NOT NULL,
	updated      bigint NOT NULL,
	PRIMARY KEY (label, ext_brand_id, user_ext_id)
);

CREATE TABLE {s}.rejections (
	id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	label  text   NOT NULL,
	eid    text   NOT NULL,
	reason text   NOT NULL,
	path   text   NOT NULL,
	time   bigint NOT NULL
);
CREATE INDEX rejections_label ON {s}.rejections (label, id);

CREATE TABLE {s}.rejection_counts (
	label  text   NOT NULL,
	reason text   NOT NULL,
	n      bigint NOT NULL,
	PRIMARY KEY (label, reason)
);

CREATE TABLE {s}.checkpoints (
	source  text   PRIMARY KEY,
	value   text   NOT NULL,
	updated bigint NOT NULL
);
`,
}

// migratePostgres creates the schema if it is missing and applies the
// migrations it lacks (internal/pgschema).
func (s *Store) migratePostgres(ctx context.Context, schema string) error {
	err := pgschema.Migrate(ctx, s.db, "core", schema, pgMigrations, func(v int) {
		s.log.Info("store schema migrated", "version", v)
	})
	if errors.Is(err, pgschema.ErrNotDurable) {
		// Acknowledged only once durable: off would lose acknowledged events
		// in a crash of the server.
		return fmt.Errorf("acknowledged events could be lost: %w", err)
	}
	return err
}
