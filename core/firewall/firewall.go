// Package firewall is the core's PII firewall (DESIGN.md §8): it finds
// values in player events that look like personal data — email addresses,
// phone numbers, payment card numbers, IBANs, and the values of
// properties whose names mean PII — and refuses the event or strips them
// from it, before anything is stored.
//
// It sits on the vendor side of the trust boundary, where the core must
// never hold PII: events name players by the operator's pseudonymous ids
// and by opaque tokens (tok_email_v1_…), and a well-formed token is
// allowed anywhere. The firewall is pure: no I/O, no clock, no logging.
// What it reports — a JSON path and a reason — never holds a value, and a
// key that may itself be PII is written "*" in a path.
//
// The rules are heuristics, tuned so that two corpora both hold:
// testdata/legit (events that must pass unchanged: opt-out flags, epoch
// millisecond timestamps, numeric ids, amounts, bonus codes, tokens) and
// testdata/pii (events that must be caught, with the path and reason).
// The doc comments of detect.go and names.go give each rule and what it
// lets through or refuses wrongly.
package firewall

import (
	"encoding/json"
	"errors"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/blindpost/blindpost/core/event"
)

// Mode is what the firewall does with an event that holds PII: refuse it,
// or strip the offending payload values and keep it. It is a label's
// setting (store.Label.FirewallMode).
type Mode string

const (
	// Reject refuses an event with any violation.
	Reject Mode = "reject"
	// Strip removes the offending payload values and keeps the event,
	// unless the violation is in eid, ext_brand_id, user_ext_id or
	// event_type, which cannot be removed.
	Strip Mode = "strip"
)

// ErrMode means a firewall mode other than "reject" or "strip".
var ErrMode = errors.New("firewall: mode must be reject or strip")

// ParseMode parses "reject" or "strip". The error never quotes s.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Reject, Strip:
		return m, nil
	}
	return "", ErrMode
}

// Reasons, a closed set: rejection records, metrics and API errors carry them.
const (
	ReasonEmail       = "email"
	ReasonPhone       = "phone"
	ReasonCard        = "card"
	ReasonIBAN        = "iban"
	ReasonPIIProperty = "pii_property" // a property whose name means PII, with a value that is not a token
)

// Violation is one value the firewall refused: where it is, and why.
// Path is "eid", "ext_brand_id", "user_ext_id", "event_type", or a path
// into the payload such as "payload.contact.email" or "payload.tags[2]".
// A key that is not a plain identifier (1–64 bytes of letters, digits and
// _ - + ^ ! $) or that looks like PII itself is written "*"; a path deeper
// than MaxPathDepth ends in "...".
type Violation struct{ Path, Reason string }

// Bounds on what one Check reports, so that a hostile event (10 MB of
// nested arrays of emails) costs time linear in its size and a report
// that fits in an error message. Strip mode strips everything all the
// same; reject mode stops looking once it has MaxViolations.
const (
	MaxViolations = 64
	MaxPathDepth  = 32
)

// Options adjust the property-name rule for a deployment. The zero value
// is the built-in rule.
type Options struct {
	// PIIProperties are more property names that mean PII, such as names in
	// the label's own language ("telefono", "nachname"). They are
	// normalised like the built-in ones: case, separators and camelCase do
	// not matter, and the name matches when a key ends with it.
	PIIProperties []string
	// AllowProperties are property names exempt from the name rule, for a
	// schema that uses one of its terms for something else. The values of
	// such properties are still checked for emails, phones, cards and IBANs.
	AllowProperties []string
}

// Firewall checks events. It is safe for concurrent use.
type Firewall struct {
	names   *nameRule
	cache   verdictCache
	walkers sync.Pool
}

// New returns a firewall with the given options.
func New(opts Options) *Firewall {
	f := &Firewall{names: newNameRule(opts.PIIProperties, opts.AllowProperties)}
	f.cache.seed = maphash.MakeSeed()
	f.walkers.New = func() any { return new(walker) }
	return f
}

// verdictCache remembers the verdicts of key names, since the same few
// dozen keys come in every event and judging one costs more than the rest
// of its check. It is a fixed array of slots written and read atomically,
// so it needs no lock, never grows, and lets an event full of random keys
// only evict entries. A slot holds a key's seeded hash with the verdict in
// its two low bits — not the key, which may itself be personal data the
// rules did not recognise. Two keys whose hashes agree in all other 62
// bits would share a verdict; with a per-process random seed that is not a
// risk anyone can steer.
type verdictCache struct {
	seed  maphash.Seed
	slots [1 << cacheBits]atomic.Uint64
}

const cacheBits = 12

func (c *verdictCache) get(key string) (verdict, uint64) {
	h := maphash.String(c.seed, key) &^ 3
	e := c.slots[h>>(64-cacheBits)].Load()
	if e&^3 != h {
		return unknown, h
	}
	return verdict(e & 3), h
}

func (c *verdictCache) put(h uint64, v verdict) {
	c.slots[h>>(64-cacheBits)].Store(h | uint64(v))
}

// piiKey reports whether a key names PII; parent is the enclosing
// object's key, and root says the object is the payload itself.
func (w *walker) piiKey(key, parent string, root bool) bool {
	f := w.fw
	v, h := f.cache.get(key)
	if v == unknown {
		v = f.names.judge(key, &w.sc)
		f.cache.put(h, v)
	}
	return v == pii || v == generic && f.names.inContext(key, parent, root, &w.sc)
}

// Check returns the violations of ev, sorted by path, at most
// MaxViolations of them. In Reject mode it leaves ev alone, and reject is
// true when there is any violation. In Strip mode it removes each
// offending payload value from ev — an object member or an array element;
// containers left empty stay — and reject is true only when a violation is
// in a field that cannot be removed (eid, ext_brand_id, user_ext_id,
// event_type); the payload is stripped even then, so a refused event holds
// no PII either. Any other mode is Reject: the firewall fails closed. A
// nil ev is rejected with no violations.
//
// When a violation's path is "eid", the event id itself is PII: a caller
// must not record or echo it.
//
// The payload must be a tree of the values encoding/json produces (nil,
// bool, string, json.Number or float64, []any, map[string]any); a value of
// another type is a pii_property violation, since it cannot be checked.
func (f *Firewall) Check(ev *event.Event, mode Mode) (violations []Violation, reject bool) {
	if ev == nil {
		return nil, true
	}
	w := f.walkers.Get().(*walker)
	defer func() {
		// Keys may hold personal data the rules did not recognise: keep
		// none of them in the pool.
		clear(w.path[:cap(w.path)])
		clear(w.sc.buf[:cap(w.sc.buf)])
		clear(w.sc.ws[:cap(w.sc.ws)])
		*w = walker{path: w.path[:0], sc: w.sc}
		if cap(w.sc.buf) > 1024 || cap(w.path) > 1024 {
			*w = walker{} // a huge key or deep payload: let its space go
		}
		f.walkers.Put(w)
	}()
	w.fw, w.strip = f, mode == Strip

	for _, id := range [...]struct{ path, v string }{
		{"eid", ev.EID}, {"ext_brand_id", ev.Brand}, {"user_ext_id", ev.User}, {"event_type", ev.Type},
	} {
		if r := detect(id.v); r != "" {
			w.vs = append(w.vs, Violation{Path: id.path, Reason: r})
			reject = true // an id cannot be stripped
		}
	}
	if ev.Payload != nil {
		w.object(ev.Payload, "", true, false)
	}
	if len(w.vs) > 1 {
		slices.SortFunc(w.vs, func(a, b Violation) int {
			if c := strings.Compare(a.Path, b.Path); c != 0 {
				return c
			}
			return strings.Compare(a.Reason, b.Reason)
		})
	}
	if !w.strip {
		reject = len(w.vs) > 0
	}
	return w.vs, reject
}

// walker is the state of one Check. Its path and scratch space are reused
// through the Firewall's pool.
type walker struct {
	fw    *Firewall
	strip bool
	path  []step
	vs    []Violation
	sc    scratch
}

// step is one element of a path: an object key, or an array index when
// key is "" and index ≥ 0.
type step struct {
	key   string
	index int
}

// action is what the parent container must do with a value after the walk.
type action uint8

const (
	keep action = iota
	replace
	remove
)

// object walks the members of m; parent is m's key, root says m is the
// payload.
func (w *walker) object(m map[string]any, parent string, root, tainted bool) {
	for k, v := range m {
		if w.done() {
			return
		}
		w.path = append(w.path, step{key: k, index: -1})
		if r := detect(k); r != "" {
			w.violate(r, true) // the key itself is PII: the member goes whole
			if w.strip {
				delete(m, k)
			}
			w.path = w.path[:len(w.path)-1]
			continue
		}
		nv, act := w.value(v, k, tainted || w.piiKey(k, parent, root))
		switch act {
		case replace:
			m[k] = nv
		case remove:
			delete(m, k)
		}
		w.path = w.path[:len(w.path)-1]
	}
}

// value walks one value; key is the nearest enclosing object key, tainted
// whether one of the keys above it means PII.
func (w *walker) value(v any, key string, tainted bool) (any, action) {
	var reason string
	switch x := v.(type) {
	case nil, bool:
		return v, keep
	case string:
		if isToken(x) {
			return v, keep
		}
		reason = detect(x)
		if reason == "" && tainted && strings.TrimSpace(x) != "" {
			reason = ReasonPIIProperty
		}
	case json.Number:
		reason = detectNumber(string(x))
		if reason == "" && tainted {
			reason = ReasonPIIProperty
		}
	case float64:
		reason = detectNumber(strconv.FormatFloat(x, 'f', -1, 64))
		if reason == "" && tainted {
			reason = ReasonPIIProperty
		}
	case map[string]any:
		w.object(x, key, false, tainted)
		return v, keep
	case []any:
		if kept, changed := w.array(x, key, tainted); changed {
			return kept, replace
		}
		return v, keep
	default:
		reason = ReasonPIIProperty // not JSON data: it cannot be checked
	}
	if reason == "" {
		return v, keep
	}
	w.violate(reason, false)
	if w.strip {
		return nil, remove
	}
	return v, keep
}

// array walks the elements of a and, in strip mode, removes those that
// are PII, in place; changed says some were.
func (w *walker) array(a []any, key string, tainted bool) (kept []any, changed bool) {
	n := 0
	for i, e := range a {
		if w.done() {
			return a, false
		}
		w.path = append(w.path, step{index: i})
		ne, act := w.value(e, key, tainted)
		w.path = w.path[:len(w.path)-1]
		if act == remove {
			continue
		}
		a[n] = ne
		n++
	}
	if n == len(a) {
		return a, false
	}
	clear(a[n:])
	return a[:n], true
}

// done reports whether the walk may stop: in reject mode, once it has as
// many violations as it reports.
func (w *walker) done() bool { return !w.strip && len(w.vs) >= MaxViolations }

// violate records a violation at the current path. piiKey says the last
// key is itself PII and is written "*".
func (w *walker) violate(reason string, piiKey bool) {
	if len(w.vs) >= MaxViolations {
		return
	}
	var b strings.Builder
	b.WriteString("payload")
	for i, s := range w.path {
		if i == MaxPathDepth {
			b.WriteString("...")
			break
		}
		if s.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
			continue
		}
		b.WriteByte('.')
		if piiKey && i == len(w.path)-1 || !plainKey(s.key) {
			b.WriteByte('*')
		} else {
			b.WriteString(s.key)
		}
	}
	w.vs = append(w.vs, Violation{Path: b.String(), Reason: reason})
}

// plainKey reports whether a key may be written in a path: 1–64 bytes of
// letters, digits and _ - + ^ ! $. Keys on a path have passed the value
// detectors already; this keeps free text, which may hold a name, out.
func plainKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isAlnum(c) && strings.IndexByte("_-+^!$", c) < 0 {
			return false
		}
	}
	return true
}
