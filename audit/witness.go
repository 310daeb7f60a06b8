package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"golang.org/x/mod/sumdb/note"
)

var (
	// ErrRollback: a checkpoint signs a smaller tree than one already
	// witnessed (and is not a copy of one witnessed recently).
	ErrRollback = errors.New("audit: checkpoint rolls the log back")
	// ErrFork: a checkpoint signs a different tree of a size already
	// witnessed: the log showed two histories.
	ErrFork = errors.New("audit: checkpoint forks the log")
)

// witnessRecent is how many of the latest witnessed checkpoints a Witness
// remembers, so that a stale one arriving late (status callbacks are
// retried and may overtake each other) is recognised as a copy rather than
// taken for a rollback.
const witnessRecent = 4096

// A Witness keeps, on the vendor's side, every new checkpoint the
// operator's gateway publishes, in an append-only file. It checks each one
// as it arrives: signed by the gateway's key, never smaller than the
// largest seen, never a second root for a size seen. An auditor later
// passes any of these copies to Verify, so an operator who rewrote its log
// cannot hide it.
//
// Sizes alone cannot show that a larger tree extends a smaller one; that
// needs the log itself, and is what Verify checks against a witness copy.
type Witness struct {
	mu     sync.Mutex
	f      *os.File
	v      note.Verifier
	latest []byte
	recent []Checkpoint // increasing sizes, the last is the latest
}

// OpenWitness opens (creating if needed) the witness file at path for the
// log named origin whose checkpoints pub signs.
func OpenWitness(path string, pub ed25519.PublicKey, origin string) (*Witness, error) {
	v, err := NewVerifier(origin, pub)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit: open witness: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open witness: %w", err)
	}
	w := &Witness{f: f, v: v}
	if err := w.load(); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: open witness %s: %w", filepath.Base(path), err)
	}
	return w, nil
}

func (w *Witness) load() error {
	if err := lock(w.f); err != nil {
		return err
	}
	fr := newFrameReader(w.f, 0, maxCheckpointLen)
	for k := 0; ; k++ {
		b, err := fr.next(nil)
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errTorn) {
			// A checkpoint whose write a crash cut short was never
			// acknowledged; it will come again with the next callback.
			if err := w.f.Truncate(fr.off); err != nil {
				return err
			}
			return w.f.Sync()
		}
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", k, err)
		}
		c, err := ParseCheckpoint(b, w.v)
		if err != nil {
			return fmt.Errorf("checkpoint %d: %w", k, err)
		}
		if len(w.recent) > 0 && c.Size <= w.recent[len(w.recent)-1].Size {
			return fmt.Errorf("%w: checkpoint %d is not larger than the one before", ErrRollback, k)
		}
		w.remember(b, c)
	}
}

func (w *Witness) remember(b []byte, c Checkpoint) {
	w.latest = b
	if len(w.recent) == witnessRecent {
		w.recent = append(w.recent[:0], w.recent[witnessRecent/2:]...)
	}
	w.recent = append(w.recent, c)
}

// Observe checks checkpoint and, if it signs a larger tree than any seen,
// stores it durably before returning. A copy of a checkpoint already seen
// is accepted and not stored again.
func (w *Witness) Observe(checkpoint []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Equal(checkpoint, w.latest) { // the common case: no new work
		return nil
	}
	c, err := ParseCheckpoint(checkpoint, w.v)
	if err != nil {
		return fmt.Errorf("audit: observe: %w", err)
	}
	if n := len(w.recent); n > 0 && c.Size <= w.recent[n-1].Size {
		i := sort.Search(n, func(i int) bool { return w.recent[i].Size >= c.Size })
		switch {
		case i < n && w.recent[i].Size == c.Size && w.recent[i].Root == c.Root:
			return nil
		case i < n && w.recent[i].Size == c.Size:
			return fmt.Errorf("audit: observe: %w: two roots for size %d", ErrFork, c.Size)
		default:
			return fmt.Errorf("audit: observe: %w: size %d after size %d", ErrRollback, c.Size, w.recent[n-1].Size)
		}
	}
	if _, err := w.f.Write(appendFrame(nil, checkpoint)); err != nil {
		return fmt.Errorf("audit: observe: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: observe: %w", err)
	}
	w.remember(bytes.Clone(checkpoint), c)
	return nil
}

// Latest returns the latest witnessed checkpoint, as signed and parsed,
// or nil if there is none yet.
func (w *Witness) Latest() ([]byte, Checkpoint) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.latest == nil {
		return nil, Checkpoint{}
	}
	return bytes.Clone(w.latest), w.recent[len(w.recent)-1]
}

// All returns every witnessed checkpoint, oldest first, read from the file.
func (w *Witness) All() ([][]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fr := newFrameReader(io.NewSectionReader(w.f, 0, 1<<62), 0, maxCheckpointLen)
	var all [][]byte
	for {
		b, err := fr.next(nil)
		if err == io.EOF {
			return all, nil
		}
		if err != nil {
			return all, fmt.Errorf("audit: witness: %w", err)
		}
		all = append(all, b)
	}
}

// Close closes the witness file.
func (w *Witness) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}
