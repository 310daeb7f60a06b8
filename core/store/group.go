package store

import (
	"context"
	"errors"
)

// On SQLite, one writer goroutine runs every Ingest: it takes one waiting
// call, then every other call already waiting (up to maxGroup events), and
// writes them all in one transaction with one sync of the WAL (group
// commit). Concurrent small batches, as the events API receives them, so
// cost one commit rather than one each. The batch grows by itself while
// the previous commit syncs; no call ever waits for a timer.
//
// A call's events are written all or none. If a group's transaction
// fails, each of its calls is written again alone, so that one cannot fail
// the others.

// maxGroup bounds the events of one group: a few MB.
const maxGroup = 8192

type ingestReq struct {
	ctx context.Context
	b   *batch
	// alone, instead of b, is a transaction the writer runs by itself
	// (writeAlone): one that changes players must run where the player
	// cache is kept.
	alone func(*txn) error
	done  chan ingestResult // buffered: the writer never waits for a caller
}

type ingestResult struct {
	outs []Outcome
	err  error
}

func (s *Store) startWriter() {
	s.reqs = make(chan *ingestReq)
	s.closing = make(chan struct{})
	s.writer.Add(2)
	go s.writeLoop()
	go s.checkpointLoop()
}

// submit hands b to the writer and waits for its outcome. If ctx ends
// first, the batch may or may not be written; a retry finds its events
// duplicates if it was.
func (s *Store) submit(ctx context.Context, b *batch) ([]Outcome, error) {
	r := &ingestReq{ctx: ctx, b: b, done: make(chan ingestResult, 1)}
	select {
	case s.reqs <- r:
	case <-s.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.outs, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Store) writeLoop() {
	defer s.writer.Done()
	var group []*ingestReq
	for {
		group = group[:0]
		select {
		case r := <-s.reqs:
			if r.alone != nil {
				s.commitAlone(r)
				continue
			}
			group = append(group, r)
		case <-s.closing:
			return
		}
		n := len(group[0].b.evs)
		var alone *ingestReq
	gather:
		for n < maxGroup {
			select {
			case r := <-s.reqs:
				if r.alone != nil {
					alone = r // after the group
					break gather
				}
				group = append(group, r)
				n += len(r.b.evs)
			default:
				break gather
			}
		}
		s.commitGroup(group)
		if alone != nil {
			s.commitAlone(alone)
		}
	}
}

// commitGroup writes a group in one transaction and answers its calls.
func (s *Store) commitGroup(group []*ingestReq) {
	if err := s.lockForIngest(); err != nil {
		for _, r := range group {
			r.done <- ingestResult{err: err}
		}
		return
	}
	ctx := context.Background() // one caller giving up must not abort the others
	results := make([]ingestResult, len(group))
	err := s.write(ctx, func(t *txn) error {
		clear(results)
		for i, r := range group {
			if err := r.ctx.Err(); err != nil {
				results[i].err = err // nobody waits: write nothing
				continue
			}
			outs, err := t.ingestBatch(ctx, r.b)
			if errors.Is(err, ErrNotFound) {
				// The label is looked up before anything is written:
				// this call fails alone.
				results[i].err = err
				continue
			}
			if err != nil {
				return err
			}
			results[i].outs = outs
		}
		return nil
	})
	if err != nil && len(group) > 1 {
		s.log.Warn("store group commit failed, writing calls one by one", "calls", len(group), "err", err)
		for _, r := range group {
			s.commitGroup([]*ingestReq{r})
		}
		return
	}
	for i, r := range group {
		if err != nil {
			results[i] = ingestResult{err: err}
		}
		r.done <- results[i]
	}
}

// lockForIngest takes, once, the lock that makes this process the only one
// ingesting into the file: the player cache is true to the file only if
// nobody else changes players.
func (s *Store) lockForIngest() error {
	if s.lock != nil {
		return nil
	}
	f, err := lockFile(s.lockPath)
	if err != nil {
		return err
	}
	if f != nil {
		s.lock = f
	}
	return nil
}
