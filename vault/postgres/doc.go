// Package postgres is a vault.Store in PostgreSQL (pgx v5), for operators
// who run several gateway nodes that must share the sealed records and the
// token index. It sits on the operator side of the trust boundary, inside
// the gateway, like vault/embedded, and uses the same cryptography: every
// record is sealed with XChaCha20-Poly1305 under a fresh random per-subject
// data key, the data key is wrapped by the tenant's key-encryption key
// through the vault.KeyProvider, both bound by vault.AssociatedData to the
// subject and the record version; tokens come from the provider's TokenMAC
// under the pinned token key version. The database never sees PII in
// clear: only ciphertext, wrapped keys, tokens and the PAM's pseudonymous
// ids.
//
// # Schema
//
// Open creates the schema named by Options.Schema (default
// "blindpost_vault") and applies the migrations it lacks, recorded in
// schema_version; nodes starting at once serialise on an advisory lock, and
// a schema newer than the binary is refused. The tables:
//
//	subjects      (tenant, brand, user_id) → version, sealed_record
//	data_keys     (tenant, brand, user_id) → wrapped_key
//	tokens        (tenant, brand, token, user_id), also indexed by subject
//	key_checks    tenant → a random value wrapped under the tenant's key,
//	              so Open fails with vault.ErrCorrupt on a wrong key
//	shred_pending erasures and re-wrap passes not yet shredded (when, and
//	              the transaction's id; no subject ids)
//
// The role that opens the store needs CREATE on the database (or a schema
// it owns, created beforehand) and must own the tables, since Shred runs
// VACUUM FULL on them. PostgreSQL 13 or newer.
//
// # Several nodes
//
// Put runs in one transaction that first locks the subject's row (SELECT
// ... FOR UPDATE), then reads the row and its data key with a fresh
// snapshot, seals the new version, and writes the record, the key and the
// token index. Puts of one subject from several nodes therefore queue on
// the row lock: none is lost and the index always matches the last record.
// Two nodes creating the same subject race on the insert; the loser gets a
// unique violation and starts over, now finding a row to lock. Readers are
// never blocked by writers. Connection failures, server shutdown, failover
// to a read-only standby, lock and serialisation conflicts, and too many
// connections give errors matching vault.ErrUnavailable; server messages
// are left out of error text, since some quote statement values.
//
// # Erasure and shredding
//
// Erase deletes the subject's token index entries, its wrapped data key and
// its sealed record in one transaction: from then on Resolve and Lookup
// give vault.ErrNotFound, on every node. But a DELETE (or an UPDATE, which
// leaves the old version behind) only marks tuples dead: their bytes stay
// in the heap pages, the TOAST table and the indexes until the space is
// reused, and a plain VACUUM frees the space without overwriting it (the
// tests show the wrapped key still in the page after one). So Erase also
// records the erasure in shred_pending, and Shred rewrites the tables with
// VACUUM FULL: data_keys first (after that rewrite the dead record can no
// longer be opened, even with the KEK), then tokens, then subjects. The
// rewrite copies only live rows into new files, rebuilds the indexes and
// the TOAST table, and truncates the old files at commit (they are unlinked
// at the next checkpoint). The erasure test reads every block of every
// relation of the store, TOAST included, with pageinspect and finds none of
// the erased subject's wrapped keys, ciphertext or tokens, of any version.
//
// A rewrite must keep rows that an open snapshot can still see, so Shred
// first compares each pending erasure's transaction with the oldest
// snapshot of the database (pg_stat_activity, prepared transactions,
// replication slots). It waits up to about 1.6 s for short transactions to
// end; erasures still visible to an older snapshot then stay pending and
// Shred returns ErrShredDeferred (a vault.ErrUnavailable) for the next run
// to finish. Only one node shreds at a time (an advisory lock); Shred with
// nothing pending returns at once, so calling it every minute is cheap.
//
// VACUUM FULL holds an ACCESS EXCLUSIVE lock on the table it rewrites:
// Resolve waits while data_keys or subjects is rewritten, Lookup while
// tokens is, Put during all three. Shred waits at most
// Options.ShredLockTimeout (2 s) for that lock, and gives up rather than
// queue every gateway statement behind a long-running reader. Measured on
// this project's 2-core CI machine (PostgreSQL 15, local disk, rows of
// real size): a Shred of a store of 10,000 subjects takes about 0.32-0.37 s,
// of 100,000 subjects about 3.8-4.4 s (data_keys 0.6 s, tokens 1.9-2.8 s,
// subjects 0.8 s), linear in the store size. An Erase with
// Options.ShredOnErase at 10,000 subjects takes about 0.46 s. So:
//
//   - small stores (up to some tens of thousands of subjects) can set
//     ShredOnErase, so an erased subject is gone from the database files
//     when DELETE /v1/subjects returns;
//   - larger ones call Shred on a schedule, in a quiet hour, and export
//     Pending as a metric. The window is then the schedule's interval
//     plus any deferral: until Shred runs, a person with the database
//     files and the KEK could still open the erased record.
//
// # Re-wrapping after a KEK rotation
//
// Rewrap (vault.Rewrapper) moves a tenant's wrapped data keys, and its key
// check, to the key provider's newest KEK version while the gateways
// serve: `blindpost keys rotate kek` runs it. It walks the subjects in
// primary-key order, a page (256) per read; a provider that is a
// vault.KEKVersioner says which keys are old, and hashivault's Transit
// provider re-wraps a page in one batch decrypt and one batch encrypt.
// Each page is written back in one short transaction whose UPDATE compares
// the wrapped key it read: every Put writes a fresh wrapped key with the
// new record version, so an unchanged key means an unchanged version, and
// a Put that raced the page is never overwritten (its row is read again;
// the Put wrapped under the newest version already). The replaced keys
// remain in dead tuples, so the pass records itself in shred_pending (one
// row per pass) and the next Shred rewrites them away. Measured on the
// machine below (BenchmarkRewrap, 2,000 subjects): 27,000-32,000 keys/s
// with the embedded key file, 10,000-12,000 keys/s with Transit on a local
// Vault dev server (1,100-1,400 keys/s key by key).
//
// # Re-tokenising after a token key change
//
// With Options.ExtraTokenVersions, Put indexes every record under those
// token key versions too, and Lookup resolves a token of any indexed
// version. Retokenize (vault.Retokenizer) adds the entries of a new
// version to the records already stored, page by page: it reads a page of
// sealed records with their data keys, opens and tokenises them outside
// any transaction (one coalesced batch of unwraps and one HMAC batch per
// version with Transit), then share-locks the page's subject rows and
// inserts the entries of those whose record version is unchanged, so a Put
// or an Erase is never undone; it deletes nothing. DropTokenVersion then
// deletes an old version's entries, once no subject would be left without
// a token of the pinned version. `blindpost keys rotate token` runs both
// (docs/key-rotation.md §5). Measured on the machine below
// (BenchmarkRetokenize, 2,000 subjects): 13,000-14,500 subjects/s with the
// key file, 6,300-6,900 with Transit.
//
// What Shred cannot reach, and the rotation that closes it: the WAL still
// holds the inserted rows until its segments are recycled, and WAL
// archives, base backups, standbys' and snapshots' copies hold them for
// their retention; the filesystem keeps the blocks of truncated files until
// it reuses them (run the cluster on an encrypted volume). All of these
// hold only wrapped keys: rotating the tenant's KEK (re-wrapping live data
// keys under a new version, then destroying the old version in the key
// provider) makes every old copy unopenable, and closes the window for
// backups made before the rotation.
//
// # Throughput
//
// Measured in one run against vault/embedded on the same machine (local
// key file provider; PostgreSQL on loopback; "parallel" is 16 goroutines;
// ops/s = 1e9 / ns/op):
//
//	                  postgres serial   parallel      embedded serial   parallel
//	Resolve           145-225 µs        88-105 µs      67-73 µs          50-77 µs
//	                  (4,500-6,900/s)   (9,500-11,400/s) (13,700-15,000/s) (13,000-20,000/s)
//	Lookup            125 µs            65 µs          23-28 µs          29-34 µs
//	                  (8,000/s)         (15,300/s)     (35,000-43,000/s) (29,000-34,000/s)
//	Put               3.8-4.0 ms        0.9-1.1 ms     1.8-1.9 ms        1.9-2.1 ms
//	                  (250-260/s)       (900-1,130/s)  (530-540/s)       (470-530/s)
//
// A Put costs one fsync'd commit, so PostgreSQL's group commit lets
// parallel Puts scale where SQLite's single writer cannot; reads pay a
// network round trip per call that the in-process SQLite file does not.
package postgres
