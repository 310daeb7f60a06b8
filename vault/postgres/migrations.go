package postgres

// migrations are applied in order, each once, inside one transaction with
// the schema_version row that records it. They are append-only: a released
// migration is never edited, a change is a new entry. {s} stands for the
// quoted schema name.
var migrations = []string{
	// 1: the record store. Wrapped data keys live apart from the sealed
	// records so that shredding rewrites a small table first (see Shred).
	`
CREATE TABLE {s}.subjects (
	tenant        text   NOT NULL,
	brand         text   NOT NULL,
	user_id       text   NOT NULL,
	version       bigint NOT NULL CHECK (version > 0),
	sealed_record bytea  NOT NULL,
	PRIMARY KEY (tenant, brand, user_id)
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE {s}.subjects ALTER COLUMN sealed_record SET STORAGE EXTERNAL;

CREATE TABLE {s}.data_keys (
	tenant      text  NOT NULL,
	brand       text  NOT NULL,
	user_id     text  NOT NULL,
	wrapped_key bytea NOT NULL,
	PRIMARY KEY (tenant, brand, user_id),
	FOREIGN KEY (tenant, brand, user_id) REFERENCES {s}.subjects ON DELETE CASCADE
);

CREATE TABLE {s}.tokens (
	tenant  text NOT NULL,
	brand   text NOT NULL,
	token   text NOT NULL,
	user_id text NOT NULL,
	PRIMARY KEY (tenant, brand, token, user_id),
	FOREIGN KEY (tenant, brand, user_id) REFERENCES {s}.subjects ON DELETE CASCADE
);
-- For Put and Erase, which replace a subject's tokens. user_id leads, so
-- the planner can never pick this index for Lookup's (tenant, brand, token)
-- and filter a whole brand: a generic plan, made before statistics exist,
-- did exactly that.
CREATE INDEX tokens_by_subject ON {s}.tokens (user_id, tenant, brand);

-- One random value per tenant, wrapped under the tenant's key, so that
-- Open notices a wrong key before anything is written.
CREATE TABLE {s}.key_checks (
	tenant  text  PRIMARY KEY,
	wrapped bytea NOT NULL
);

-- Erasures whose dead tuples Shred has not rewritten away yet. No subject
-- ids: only when, and the erasing transaction (to know which snapshots
-- could still see the deleted rows).
CREATE TABLE {s}.shred_pending (
	id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	erase_xid xid8        NOT NULL DEFAULT pg_current_xact_id(),
	erased_at timestamptz NOT NULL DEFAULT now()
);
`,
}
