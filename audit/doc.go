// Package audit is blindpost's tamper-evident audit log: an append-only
// Merkle tree of records (RFC 6962 hashing, as in Certificate Transparency
// and the Go checksum database) whose tree heads are published as signed
// C2SP checkpoints.
//
// It sits on the operator's side of the trust boundary, in the gateway,
// which appends a record for every envelope and message it accepts or
// rejects, every policy decision, delivery outcome and erasure, and signs
// checkpoints with its own Ed25519 key. The vendor's core receives those
// checkpoints in status callbacks and keeps them with a [Witness], so an
// operator that later rewrote its log could not show a history consistent
// with the copies the vendor holds. An auditor needs only the log directory
// and the gateway's public key: [Verify] recomputes the tree from the
// entries and checks it against every signed checkpoint and, optionally, a
// witness copy.
//
// Records never hold personal data: subjects are named by their random
// per-subject pseudonym, messages by ids and digests, outcomes by codes.
// Because the log is append-only and must still verify after an erasure
// (DESIGN.md §9.7), anything written here is written forever.
//
// The package imports neither the gateway's nor the core's packages, only
// the envelope format they share, so both sides can use it.
//
// # Files
//
// A log directory holds five files:
//
//	entries      the records, each framed as a 4-byte big-endian length and
//	             the record's RFC 8785 canonical JSON; record i carries
//	             "index": i. The Merkle leaf of record i is exactly its JSON.
//	hashes       the tree's stored hashes (32 bytes each, in the order of
//	             tlog.StoredHashIndex), so proofs never rehash the log.
//	index        the offset of each entry (8 bytes big-endian), so one can
//	             be read without scanning. Both are derived from the
//	             entries: Open rebuilds them if they disagree, and Verify
//	             ignores them.
//	checkpoints  every signed checkpoint, each framed like an entry.
//	lock         held with flock(2) while a Log is open.
package audit
