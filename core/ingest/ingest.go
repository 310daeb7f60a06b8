// Package ingest is the core's ingestion pipeline, on the vendor side of the
// trust boundary. Every route events arrive by (the events API, Kafka,
// RabbitMQ, SQL views) hands it a batch of raw JSON events for one label;
// it decodes each strictly, checks the brand and event type against the
// label, runs the PII firewall in the label's mode, and writes what passed,
// with a record of what the firewall refused, in one durable store
// transaction.
//
// Errors and metrics name fields, reasons and codes, never values: a value
// the firewall refused may be exactly the PII that must not leave it.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/firewall"
	"github.com/blindpost/blindpost/core/store"
)

// Store is what the pipeline needs of the core's store (*store.Store).
type Store interface {
	// Ingest writes, in one durable transaction, each event not seen
	// before for (label, eid), its profile updates and the rejections. It
	// returns one Outcome per event, in order.
	Ingest(ctx context.Context, label string, evs []event.Event, rejections []event.Rejection) ([]store.Outcome, error)
	Label(ctx context.Context, id string) (store.Label, error)
	// Authenticate returns the label of an API key, or an error wrapping
	// store.ErrUnauthorized.
	Authenticate(ctx context.Context, apiKey string) (label string, err error)
}

// Firewall is the PII firewall (*firewall.Firewall). In strip mode Check
// removes the offending payload fields from ev and reports them; reject is
// true when the event must be refused.
type Firewall interface {
	Check(ev *event.Event, mode firewall.Mode) (violations []firewall.Violation, reject bool)
}

var (
	// ErrUnknownLabel means the batch names a label the store does not know.
	ErrUnknownLabel = errors.New("ingest: unknown label")
	// ErrUnauthorized means an API key names no label.
	ErrUnauthorized = errors.New("ingest: unauthorized")
)

// Result is what became of a batch. An event is counted in exactly one of
// Stored, Duplicates and Refused.
type Result struct {
	Stored     int // newly stored, including those flagged UserNotFound
	Duplicates int // stored before: nothing changed
	Refused    int // invalid, unknown brand or type, or refused by the firewall: nothing stored
	// Errors lists the per-event errors in batch order: every refused and
	// duplicate event, and the stored events of a user the core did not
	// know (CodeUserNotFound).
	Errors []EventError
}

// EventError is one event's error.
type EventError struct {
	Index int    // position in the batch
	EID   string // "" when the event has no usable eid
	event.Error
}

// Options configures a Pipeline.
type Options struct {
	Logger *slog.Logger
	// Registerer, if set, receives the pipeline's metrics (MustRegister).
	Registerer prometheus.Registerer
	// LabelTTL is how long a label's brands, types and firewall mode are
	// cached; Invalidate drops them at once. Default 2s: nodes sharing a
	// PostgreSQL store see another node's admin changes within it.
	LabelTTL time.Duration
	Now      func() time.Time
}

// Pipeline ingests batches of events. It is safe for concurrent use.
type Pipeline struct {
	store Store
	fw    Firewall
	log   *slog.Logger
	now   func() time.Time
	ttl   time.Duration
	m     *metrics

	mu     sync.Mutex
	labels map[string]cachedLabel
}

type cachedLabel struct {
	l       *label
	expires time.Time
}

// label is a store.Label compiled for lookups.
type label struct {
	id     string
	mode   firewall.Mode
	brands map[string]bool
	types  map[string]bool
}

var commonTypes = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range event.Common {
		m[t] = true
	}
	return m
}()

// New returns a pipeline writing to st through the firewall fw.
func New(st Store, fw Firewall, opts Options) *Pipeline {
	p := &Pipeline{store: st, fw: fw, log: opts.Logger, now: opts.Now, ttl: opts.LabelTTL,
		m: newMetrics(), labels: map[string]cachedLabel{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.ttl == 0 {
		p.ttl = 2 * time.Second
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(p.m.collectors()...)
	}
	return p
}

// Authenticate returns the label an API key belongs to, or an error
// wrapping ErrUnauthorized (no such key, or revoked).
func (p *Pipeline) Authenticate(ctx context.Context, apiKey string) (string, error) {
	if apiKey == "" {
		return "", ErrUnauthorized
	}
	l, err := p.store.Authenticate(ctx, apiKey)
	switch {
	case errors.Is(err, store.ErrUnauthorized):
		return "", ErrUnauthorized
	case err != nil:
		return "", fmt.Errorf("authenticate: %w", err)
	}
	return l, nil
}

// Invalidate forgets the cached settings of a label, so an admin change
// applies to the next batch.
func (p *Pipeline) Invalidate(labelID string) {
	p.mu.Lock()
	delete(p.labels, labelID)
	p.mu.Unlock()
}

func (p *Pipeline) label(ctx context.Context, id string) (*label, error) {
	now := p.now()
	p.mu.Lock()
	c, ok := p.labels[id]
	p.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.l, nil
	}
	sl, err := p.store.Label(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("%w %q", ErrUnknownLabel, id)
	case err != nil:
		return nil, fmt.Errorf("label %q: %w", id, err)
	}
	l := &label{id: sl.ID, mode: firewall.Mode(sl.FirewallMode), brands: map[string]bool{}, types: map[string]bool{}}
	for _, b := range sl.Brands {
		l.brands[b] = true
	}
	for _, t := range sl.EventTypes {
		l.types[t] = true
	}
	p.mu.Lock()
	p.labels[id] = cachedLabel{l, now.Add(p.ttl)}
	p.mu.Unlock()
	return l, nil
}

// Ingest checks and stores one batch of a label's events. Per-event
// problems are in the Result; an error means the store did not take the
// batch and nothing of it may be acknowledged (the events API answers 5xx,
// connectors do not commit), so a retry of the whole batch is always safe:
// what was stored before comes back as duplicates.
func (p *Pipeline) Ingest(ctx context.Context, labelID string, raws []json.RawMessage) (Result, error) {
	b, err := p.Begin(ctx, labelID)
	if err != nil {
		return Result{}, err
	}
	for _, raw := range raws {
		b.Add(raw)
	}
	return b.Commit(ctx)
}

// redactedEID stands for an eid the firewall found to be PII in the
// rejection record.
const redactedEID = "*"

func eidIsPII(vs []firewall.Violation) bool {
	for _, v := range vs {
		if v.Path == "eid" {
			return true
		}
	}
	return false
}

// safeEID returns eid if it may be echoed: the firewall finds no PII in it.
// It serves events that failed to decode, which the firewall never saw.
func (p *Pipeline) safeEID(eid string) string {
	if eid == "" {
		return ""
	}
	if vs, _ := p.fw.Check(&event.Event{EID: eid}, firewall.Reject); eidIsPII(vs) {
		return ""
	}
	return eid
}

// usableEID finds the eid of an event that failed to decode, so its error
// can be keyed by it: the decoded one if validation failed later, else a
// lenient look at the raw object. "" when there is none a client could
// match.
func usableEID(ev event.Event, raw []byte) string {
	eid := ev.EID
	if eid == "" {
		var probe struct {
			EID json.RawMessage `json:"eid"`
		}
		if json.Unmarshal(raw, &probe) != nil || json.Unmarshal(probe.EID, &eid) != nil {
			return ""
		}
	}
	if len(eid) > event.MaxIDLen {
		return ""
	}
	return eid
}

// invalidMessage is a decode error without its package prefix. Decode's
// errors name fields only.
func invalidMessage(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, event.ErrInvalid.Error()+": "); ok {
		return "invalid event: " + rest
	}
	return "invalid event"
}

// piiMessage says why the firewall refused an event: each reason and JSON
// path, never the value.
func piiMessage(vs []firewall.Violation) string {
	const max = 5
	var b strings.Builder
	b.WriteString("refused by the PII firewall:")
	for i, v := range vs {
		if i == max {
			fmt.Fprintf(&b, " and %d more", len(vs)-max)
			break
		}
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " %s at %s", v.Reason, v.Path)
	}
	return b.String()
}

// reasonLabel keeps metric labels to a closed set of short identifiers even
// if a firewall reason ever carried something else.
func reasonLabel(r string) string {
	if r == "" || len(r) > 32 {
		return "other"
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c == '_') {
			return "other"
		}
	}
	return r
}
