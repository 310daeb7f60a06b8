package audit

import (
	"cmp"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// What Verify finds wrong with a log. Each names the kind of tampering the
// evidence points to; the error's text says where.
var (
	// ErrAltered: an entry's bytes differ from what was signed, or are
	// not a well-formed, canonical record.
	ErrAltered = errors.New("audit: entry altered")
	// ErrDeleted: an entry is missing from the middle of the log.
	ErrDeleted = errors.New("audit: entry deleted")
	// ErrReordered: entries are present but not in the order written.
	ErrReordered = errors.New("audit: entries reordered")
	// ErrOutOfOrder: an entry was added whose index was already used or
	// whose time is before the previous entry's.
	ErrOutOfOrder = errors.New("audit: entry out of order")
	// ErrTruncated: the log has fewer entries than a checkpoint signs.
	ErrTruncated = errors.New("audit: log truncated")
	// ErrInconsistent: the log's history differs from the one an earlier
	// checkpoint signed (a witness copy, or two checkpoints of one size).
	ErrInconsistent = errors.New("audit: log inconsistent with an earlier checkpoint")
)

// A Report describes a verified log.
type Report struct {
	Size        int64          // entries
	Checkpoints int            // signed checkpoints stored, all verified
	LatestRoot  tlog.Hash      // root of the latest checkpoint
	ByKind      map[string]int // entries per kind
	Unsigned    int64          // entries after the latest checkpoint, not yet signed
	Torn        int64          // bytes of a last entry cut short by a crash
}

// Verify checks the log in dir against the Ed25519 key pub of the log
// named origin, reading only the files: it recomputes the Merkle tree from
// the entries and checks that
//
//   - every entry is a canonical record whose index is its position and
//     whose time is not before the previous entry's;
//   - every stored checkpoint is signed by pub for origin, and its root is
//     the recomputed root of the tree of its size;
//   - the entries cover the latest checkpoint (Report.Unsigned counts those
//     after it, which an honest log has only briefly);
//   - since, if not nil, an earlier checkpoint held by someone else (a
//     witness copy), signs a prefix of the same history.
//
// It returns the first problem found, wrapping one of the sentinel errors,
// with the report of what it read so far. It does not read the hashes and
// index files, which the log derives from the entries.
func Verify(dir string, pub ed25519.PublicKey, origin string, since []byte) (Report, error) {
	if since == nil {
		return VerifyWitnessed(dir, pub, origin)
	}
	return VerifyWitnessed(dir, pub, origin, since)
}

// VerifyWitnessed is Verify against any number of earlier checkpoints held
// by others (a witness copy, a checkpoint an auditor kept), in one pass over
// the entries: the log must be consistent with every one of them.
func VerifyWitnessed(dir string, pub ed25519.PublicKey, origin string, witnessed ...[]byte) (Report, error) {
	rep := Report{ByKind: make(map[string]int)}
	v, err := NewVerifier(origin, pub)
	if err != nil {
		return rep, err
	}
	if _, err := os.Stat(dir); err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	var witnesses []Checkpoint
	var maxWitness int64
	for i, b := range witnessed {
		c, err := ParseCheckpoint(b, v)
		if err != nil {
			return rep, fmt.Errorf("%w (witnessed checkpoint %d)", err, i+1)
		}
		witnesses = append(witnesses, c)
		maxWitness = max(maxWitness, c.Size)
	}
	cps, err := readCheckpoints(filepath.Join(dir, checkpointsFile), v)
	rep.Checkpoints = len(cps)
	if err != nil {
		return rep, err
	}
	if len(cps) == 0 {
		return rep, fmt.Errorf("%w: no signed checkpoint", ErrTruncated)
	}
	latest := cps[len(cps)-1]
	rep.LatestRoot = latest.Root

	// The roots to compare, by tree size, in increasing order.
	type target struct {
		Checkpoint
		witness int // 0: the log's own; k: the k-th witnessed checkpoint
	}
	var targets []target
	for _, c := range cps {
		targets = append(targets, target{c, 0})
	}
	for i, c := range witnesses {
		targets = append(targets, target{c, i + 1})
	}
	slices.SortStableFunc(targets, func(a, b target) int { return cmp.Compare(a.Size, b.Size) })
	mismatch := func(t target, i int64) error {
		if t.witness > 0 {
			if len(witnesses) == 1 {
				return fmt.Errorf("%w: the tree of size %d differs from the witness checkpoint", ErrInconsistent, i)
			}
			return fmt.Errorf("%w: the tree of size %d differs from witnessed checkpoint %d", ErrInconsistent, i, t.witness)
		}
		return fmt.Errorf("%w: entries 0 to %d do not match the checkpoint of size %d", ErrAltered, i-1, i)
	}
	for len(targets) > 0 && targets[0].Size == 0 {
		if targets[0].Root != emptyRoot {
			return rep, mismatch(targets[0], 0)
		}
		targets = targets[1:]
	}

	f, err := os.Open(filepath.Join(dir, entriesFile))
	if errors.Is(err, os.ErrNotExist) && latest.Size > 0 {
		return rep, fmt.Errorf("%w: no entries file, the latest checkpoint signs %d", ErrTruncated, latest.Size)
	}
	if err != nil {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}
	defer f.Close()
	var (
		fr    = newFrameReader(f, 0, maxEntryLen)
		front = newFrontier()
		prev  time.Time
		i     int64
		buf   []byte
		hs    []tlog.Hash
	)
	for ; ; i++ {
		b, err := fr.next(buf)
		if err == io.EOF {
			break
		}
		if errors.Is(err, errTorn) {
			fi, err := f.Stat()
			if err != nil {
				return rep, fmt.Errorf("audit: verify: %w", err)
			}
			rep.Torn = fi.Size() - fr.off
			break
		}
		if err != nil {
			return rep, fmt.Errorf("%w: entry at position %d: %v", ErrAltered, i, err)
		}
		buf = b
		r, err := parseEntry(b, true)
		if err != nil {
			return rep, fmt.Errorf("%w: entry at position %d: %v", ErrAltered, i, err)
		}
		if r.Index != i {
			return rep, misplaced(fr, i, r.Index)
		}
		if r.Time.Before(prev) {
			return rep, fmt.Errorf("%w: entry %d is dated before entry %d", ErrOutOfOrder, i, i-1)
		}
		prev = r.Time
		rep.Size = i + 1
		rep.ByKind[r.Kind]++
		if hs, err = front.add(i, tlog.RecordHash(b), hs[:0]); err != nil {
			return rep, fmt.Errorf("audit: verify: %w", err)
		}
		if len(targets) > 0 && targets[0].Size == i+1 {
			root, err := tlog.TreeHash(i+1, front)
			if err != nil {
				return rep, fmt.Errorf("audit: verify: %w", err)
			}
			for len(targets) > 0 && targets[0].Size == i+1 {
				if targets[0].Root != root {
					return rep, mismatch(targets[0], i+1)
				}
				targets = targets[1:]
			}
		}
	}
	if latest.Size > rep.Size {
		return rep, fmt.Errorf("%w: %d entries, the latest checkpoint signs %d", ErrTruncated, rep.Size, latest.Size)
	}
	if maxWitness > rep.Size {
		return rep, fmt.Errorf("%w: %d entries, a witnessed checkpoint signs %d", ErrTruncated, rep.Size, maxWitness)
	}
	rep.Unsigned = rep.Size - latest.Size
	return rep, nil
}

// misplaced explains an entry at position p that carries index j. Every
// entry before p was in place, so j > p unless j was used already. If
// index p turns up later, entries were moved; if not, p was removed.
func misplaced(fr *frameReader, p, j int64) error {
	if j < p {
		return fmt.Errorf("%w: entry at position %d repeats index %d", ErrOutOfOrder, p, j)
	}
	for {
		b, err := fr.next(nil)
		if err != nil {
			break
		}
		if r, err := parseEntry(b, false); err == nil && r.Index == p {
			return fmt.Errorf("%w: entry %d found after entry %d", ErrReordered, p, j)
		}
	}
	return fmt.Errorf("%w: entry %d is missing (position %d holds entry %d)", ErrDeleted, p, p, j)
}

// readCheckpoints reads and verifies every checkpoint in the file. Sizes
// must not shrink from one to the next, and two checkpoints of one size
// must sign the same root. A final checkpoint cut short by a crash was
// never handed out and is ignored.
func readCheckpoints(path string, v note.Verifier) ([]Checkpoint, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // reported as no signed checkpoint
	}
	if err != nil {
		return nil, fmt.Errorf("audit: verify: %w", err)
	}
	defer f.Close()
	fr := newFrameReader(f, 0, maxCheckpointLen)
	var cps []Checkpoint
	for k := 0; ; k++ {
		b, err := fr.next(nil)
		if err == io.EOF || errors.Is(err, errTorn) {
			return cps, nil
		}
		if err != nil {
			return cps, fmt.Errorf("%w: checkpoint %d: %v", ErrForgedCheckpoint, k, err)
		}
		c, err := ParseCheckpoint(b, v)
		if err != nil {
			return cps, fmt.Errorf("%w (checkpoint %d)", err, k)
		}
		if k > 0 {
			switch prev := cps[k-1]; {
			case c.Size < prev.Size:
				return cps, fmt.Errorf("%w: checkpoint %d signs %d entries, fewer than checkpoint %d", ErrInconsistent, k, c.Size, k-1)
			case c.Size == prev.Size && c.Root != prev.Root:
				return cps, fmt.Errorf("%w: checkpoints %d and %d sign different trees of size %d", ErrInconsistent, k-1, k, c.Size)
			}
		}
		cps = append(cps, c)
	}
}
