package queue

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

// DefaultSchema is the PostgreSQL schema of a queue whose Options name none.
const DefaultSchema = "blindpost_queue"

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// OpenPostgres opens the queue in PostgreSQL: its tables live in schema
// opts.Schema (default DefaultSchema, created if missing), migrated under a
// lock so nodes starting together do not race. dsn is a postgres:// URL or
// a key=value string, as pgx takes it.
//
// Several gateway nodes may open the same schema: each message is claimed
// by one node at a time, sequence numbers, frequency caps, nonces and
// volume counters are shared. Each node needs its own Options.Node, and
// their clocks must agree to well within a lease.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Queue, error) {
	schema := cmp.Or(opts.Schema, DefaultSchema)
	if !schemaName.MatchString(schema) {
		return nil, fmt.Errorf("%w: schema %q: want 1-63 characters of [a-z0-9_], not starting with a digit", ErrInvalid, schema)
	}
	cfg, err := pgx.ParseConfig(dsn) // its errors leave the password out
	if err != nil {
		return nil, fmt.Errorf("queue: postgres: %w", err)
	}
	// Every statement names its tables unqualified: the schema is the
	// only one on the search path of the queue's connections.
	cfg.RuntimeParams["search_path"] = schema
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "blindpost-queue"
	}
	conns := opts.MaxConns
	if conns <= 0 {
		conns = 8
	}
	q := newQueue(postgresDialect, opts)
	q.db = stdlib.OpenDB(*cfg)
	q.db.SetMaxOpenConns(conns)
	q.db.SetMaxIdleConns(conns)
	q.reserveLocks = lockSpace("reserve", schema)
	q.receiptLocks = lockSpace("receipt", schema)
	if err := q.migratePostgres(ctx, schema); err != nil {
		q.db.Close()
		return nil, fmt.Errorf("queue: postgres: %w", err)
	}
	q.start()
	return q, nil
}

// lockSpace names a space of advisory locks of the queue in schema.
func lockSpace(use, schema string) int64 { return pgschema.LockKey("queue", use, schema) }

// pgMigrations are PostgreSQL's, applied in order, each once, in one
// transaction with the schema_version row that records it. Append, never
// edit. The first arrives at the tables SQLite's migrations arrive at; {s}
// stands for the quoted schema name. Types: text, bytea, and bigint for
// every number (times are Unix nanoseconds).
var pgMigrations = []string{
	`
CREATE TABLE {s}.answers (
	tenant         text   NOT NULL,
	id             text   NOT NULL,
	hash           bytea  NOT NULL,
	status         text   NOT NULL,
	ext_message_id text   NOT NULL,
	code           text   NOT NULL,
	message        text   NOT NULL,
	created        bigint NOT NULL,
	PRIMARY KEY (tenant, id)
);
CREATE INDEX answers_created ON {s}.answers (created);

-- due is when the entry may next be claimed: not_before, or the end of its
-- lease, which owner (a node) holds.
CREATE TABLE {s}.entries (
	ext_id       text   PRIMARY KEY,
	tenant       text   NOT NULL,
	msg_id       text   NOT NULL,
	brand        text   NOT NULL,
	"user"       text   NOT NULL,
	request      bytea  NOT NULL,
	envelope     bytea,
	not_before   bigint NOT NULL,
	expires_at   bigint NOT NULL,
	attempts     bigint NOT NULL,
	created      bigint NOT NULL,
	due          bigint NOT NULL,
	callback_url text   NOT NULL DEFAULT '',
	compat       bytea,
	owner        text   NOT NULL DEFAULT ''
);
CREATE INDEX entries_due ON {s}.entries (due);
CREATE INDEX entries_msg ON {s}.entries (tenant, msg_id);
CREATE INDEX entries_subject ON {s}.entries (tenant, brand, "user") WHERE "user" <> '';

-- Sequence numbers outlive the events they numbered, so they stay increasing.
CREATE TABLE {s}.seqs (
	tenant text   PRIMARY KEY,
	last   bigint NOT NULL
);

CREATE TABLE {s}.events (
	id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant         text   NOT NULL,
	seq            bigint NOT NULL,
	msg_id         text   NOT NULL,
	ext_message_id text   NOT NULL,
	status         text   NOT NULL,
	reason         text   NOT NULL,
	decision_id    text   NOT NULL,
	time           bigint NOT NULL,
	checkpoint     text   NOT NULL,
	attempts       bigint NOT NULL DEFAULT 0,
	next_at        bigint NOT NULL,
	due            bigint NOT NULL,
	callback_url   text   NOT NULL DEFAULT '',
	owner          text   NOT NULL DEFAULT '',
	UNIQUE (tenant, seq)
);
CREATE INDEX events_due ON {s}.events (due);

CREATE TABLE {s}.reservations (
	key    text   NOT NULL,
	at     bigint NOT NULL,
	until  bigint NOT NULL,
	ext_id text   NOT NULL
);
CREATE INDEX reservations_key ON {s}.reservations (key, at);
CREATE INDEX reservations_until ON {s}.reservations (until);

CREATE TABLE {s}.provider_ids (
	adapter        text   NOT NULL,
	provider_id    text   NOT NULL,
	tenant         text   NOT NULL,
	msg_id         text   NOT NULL,
	ext_message_id text   NOT NULL,
	callback_url   text   NOT NULL,
	receipt        text   NOT NULL DEFAULT '',
	created        bigint NOT NULL,
	PRIMARY KEY (adapter, provider_id)
);
CREATE INDEX provider_ids_ext ON {s}.provider_ids (ext_message_id);
CREATE INDEX provider_ids_created ON {s}.provider_ids (created);

CREATE TABLE {s}.nonces (
	tenant text   NOT NULL,
	nonce  bytea  NOT NULL,
	until  bigint NOT NULL,
	PRIMARY KEY (tenant, nonce)
);
CREATE INDEX nonces_until ON {s}.nonces (until);

-- One row per node, so that nodes counting at once do not queue for one row.
CREATE TABLE {s}.volume (
	tenant text   NOT NULL,
	second bigint NOT NULL,
	node   text   NOT NULL,
	n      bigint NOT NULL,
	PRIMARY KEY (tenant, second, node)
);
`,
}

// migratePostgres creates the schema if it is missing and applies the
// migrations it lacks (internal/pgschema).
func (q *Queue) migratePostgres(ctx context.Context, schema string) error {
	err := pgschema.Migrate(ctx, q.db, "queue", schema, pgMigrations, func(v int) {
		q.log.Info("queue schema migrated", "version", v)
	})
	if errors.Is(err, pgschema.ErrNotDurable) {
		// Acknowledged only once durable: off would lose acknowledged messages
		// in a crash of the server.
		return fmt.Errorf("acknowledged messages could be lost: %w", err)
	}
	return err
}
