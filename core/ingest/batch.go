package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/firewall"
)

// chunkSize is how many events a worker decodes and checks at a time.
// Batches smaller than one chunk are checked in Commit, without workers.
const chunkSize = 128

// Batch is one batch being received. Events are decoded and run through the
// firewall on every core while the rest arrive (Add), so that work overlaps
// the upload; Commit then stores the batch in one transaction. A Batch is
// used by one goroutine; call Commit or Abort exactly once.
type Batch struct {
	p     *Pipeline
	l     *label
	start time.Time

	chunks      []*chunk
	cur         *chunk
	work        chan *chunk // nil until the first full chunk
	wg          sync.WaitGroup
	requireJSON bool
}

// MalformedError is Commit's error for a batch with an element that is not
// well-formed JSON, when the batch requires it (RequireJSON).
type MalformedError struct{ Index int }

func (e *MalformedError) Error() string {
	return fmt.Sprintf("ingest: event %d of the batch is not well-formed JSON", e.Index)
}

// chunk is a run of consecutive events of a batch and their checks.
type chunk struct {
	base int // batch index of raws[0]
	raws []json.RawMessage
	out  []checked
}

// checked is one event decoded and seen by the firewall. For an event
// that failed to decode, err is set and ev.EID is the eid its error may be
// keyed by ("" if none may).
type checked struct {
	ev        event.Event
	vs        []firewall.Violation
	reject    bool
	err       error
	malformed bool // not well-formed JSON (looked at only under RequireJSON)
}

// Begin starts a batch of a label's events.
func (p *Pipeline) Begin(ctx context.Context, labelID string) (*Batch, error) {
	start := p.now()
	l, err := p.label(ctx, labelID)
	if err != nil {
		return nil, err
	}
	return &Batch{p: p, l: l, start: start}, nil
}

// RequireJSON makes Commit refuse the whole batch, storing nothing, if an
// element is not well-formed JSON: the events API's body was cut into
// elements without parsing them, and a malformed body is a 400, not a
// per-event error. Connectors, whose messages come one by one, leave it
// off: one broken message must not hold up the rest. Call it before Add.
func (b *Batch) RequireJSON() { b.requireJSON = true }

// Add appends one event's JSON to the batch. The batch keeps raw until it
// has been decoded.
func (b *Batch) Add(raw json.RawMessage) {
	if b.cur == nil {
		base := 0
		if n := len(b.chunks); n > 0 {
			base = b.chunks[n-1].base + chunkSize
		}
		b.cur = &chunk{base: base, raws: make([]json.RawMessage, 0, chunkSize)}
		b.chunks = append(b.chunks, b.cur)
	}
	b.cur.raws = append(b.cur.raws, raw)
	if len(b.cur.raws) == chunkSize {
		b.dispatch(b.cur)
		b.cur = nil
	}
}

// Len is the number of events added.
func (b *Batch) Len() int {
	if len(b.chunks) == 0 {
		return 0
	}
	last := b.chunks[len(b.chunks)-1]
	return last.base + len(last.raws)
}

func (b *Batch) dispatch(c *chunk) {
	if b.work == nil {
		b.work = make(chan *chunk, 2*runtime.GOMAXPROCS(0))
		for range runtime.GOMAXPROCS(0) {
			b.wg.Go(func() {
				for c := range b.work {
					b.check(c)
				}
			})
		}
	}
	b.work <- c
}

// check decodes each event of c and runs the firewall on it (which, in
// strip mode, removes what it finds). The firewall goes first of all
// checks: whatever else is wrong with an event, an eid that is itself PII
// must not be echoed, and PII is recorded as refused.
func (b *Batch) check(c *chunk) {
	c.out = make([]checked, len(c.raws))
	for i, raw := range c.raws {
		o := &c.out[i]
		o.ev, o.err = event.Decode(raw)
		if o.err != nil {
			if b.requireJSON && !json.Valid(raw) {
				o.malformed = true
				continue
			}
			o.ev = event.Event{EID: b.p.safeEID(usableEID(o.ev, raw))}
			continue
		}
		o.vs, o.reject = b.p.fw.Check(&o.ev, b.l.mode)
	}
	c.raws = nil // decoded: the batch holds each event once
}

// wait finishes the checks: the last, partial chunk here, the others by
// the workers.
func (b *Batch) wait() {
	if b.cur != nil {
		b.check(b.cur)
		b.cur = nil
	}
	if b.work != nil {
		close(b.work)
		b.wg.Wait()
		b.work = nil
	}
}

// Abort drops the batch (its body was malformed, say): nothing is stored.
func (b *Batch) Abort() {
	b.wait()
	b.chunks = nil
}

// Commit checks the brands and event types, stores what passed and the
// firewall's rejections in one transaction, and says what became of each
// event. See Pipeline.Ingest for the meaning of an error.
func (b *Batch) Commit(ctx context.Context) (Result, error) {
	b.wait()
	p, l := b.p, b.l
	n := b.Len()
	var res Result
	evs := make([]event.Event, 0, n)
	at := make([]int, 0, n) // batch index of evs[i]
	var rejections []event.Rejection
	var tally [numResults]int
	var stripped []string // reasons of the fields the firewall removed
	refuse := func(i int, eid string, code int, r result, msg string) {
		res.Refused++
		res.Errors = append(res.Errors, EventError{Index: i, EID: eid, Error: event.Error{Code: code, Message: msg}})
		tally[r]++
	}
	for _, ch := range b.chunks {
		for k := range ch.out {
			i, c := ch.base+k, &ch.out[k]
			if c.malformed {
				b.chunks = nil
				return Result{}, &MalformedError{Index: i}
			}
			if c.err != nil {
				refuse(i, c.ev.EID, event.CodeInvalid, resultInvalid, invalidMessage(c.err))
				continue
			}
			eid := c.ev.EID
			if eidIsPII(c.vs) {
				eid = ""
			}
			if c.reject {
				recorded := c.ev.EID
				if eid == "" {
					recorded = redactedEID
				}
				for _, v := range c.vs {
					rejections = append(rejections, event.Rejection{EID: recorded, Reason: v.Reason, Path: v.Path})
				}
				refuse(i, eid, event.CodePII, resultPIIRejected, piiMessage(c.vs))
				continue
			}
			if !l.brands[c.ev.Brand] {
				refuse(i, eid, event.CodeBrandNotFound, resultBrandNotFound, "ext_brand_id is not a brand of this label")
				continue
			}
			if !commonTypes[c.ev.Type] && !l.types[c.ev.Type] {
				refuse(i, eid, event.CodeUnknownType, resultUnknownType, "event_type is neither a common type nor one registered for this label")
				continue
			}
			for _, v := range c.vs {
				stripped = append(stripped, v.Reason)
			}
			evs = append(evs, c.ev)
			at = append(at, i)
		}
	}
	b.chunks = nil
	if len(evs) == 0 && len(rejections) == 0 {
		p.m.record(l.id, &tally, nil, nil, p.now().Sub(b.start))
		return res, nil
	}
	outs, err := p.store.Ingest(ctx, l.id, evs, rejections)
	if err == nil && len(outs) != len(evs) {
		err = fmt.Errorf("store returned %d outcomes for %d events", len(outs), len(evs))
	}
	if err != nil {
		p.m.failures.WithLabelValues(l.id).Inc()
		return Result{}, fmt.Errorf("ingest %d events of label %q: %w", len(evs), l.id, err)
	}
	for j, o := range outs {
		i, eid := at[j], evs[j].EID
		switch {
		case o.Duplicate:
			res.Duplicates++
			res.Errors = append(res.Errors, EventError{Index: i, EID: eid, Error: event.Error{Code: event.CodeDuplicateEID,
				Message: "duplicate eid: stored before, nothing changed"}})
			tally[resultDuplicate]++
		case o.UserNotFound:
			res.Stored++
			res.Errors = append(res.Errors, EventError{Index: i, EID: eid, Error: event.Error{Code: event.CodeUserNotFound,
				Message: "user not found: stored, but no registration or update_profile was seen for this player"}})
			tally[resultUserNotFound]++
		default:
			res.Stored++
			tally[resultStored]++
		}
	}
	if res.Refused > 0 && len(res.Errors) > res.Refused {
		// Refusals were collected before the store's outcomes.
		slices.SortFunc(res.Errors, func(a, b EventError) int { return a.Index - b.Index })
	}
	p.m.record(l.id, &tally, rejections, stripped, p.now().Sub(b.start))
	return res, nil
}
