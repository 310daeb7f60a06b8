// Package policy decides, for the gateway, whether a message may be sent.
//
// It sits on the operator's side of the trust boundary, inside the gateway:
// the core asks for messages, the operator's Rego bundle (policy/rego/)
// decides. The evaluator runs OPA in-process on a query compiled once per
// bundle, loads bundles from a directory or a signed OPA bundle tarball,
// swaps in new ones atomically (Reload, Watch), and fails closed: a missing
// or broken bundle stops the gateway from starting, a broken replacement
// leaves the running one in place and is reported, and an evaluation that
// errs, times out or answers nonsense denies the message with the reason
// "policy_unavailable" and ErrUnavailable, which the gateway treats as
// retryable. README.md is the auditor's guide to the rules.
//
// The policy sees derived attributes only (flags, consents, country, time
// zone, counters, placeholder names, domains), never an address or a name:
// see Input. Every decision can be written in OPA's decision-log shape
// (Decision.Log), naming the player by their random pseudonym.
//
// This package imports neither the gateway nor the core.
package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Path is the policy decision the gateway evaluates, in OPA decision-log
// form (data.blindpost.gateway.decision).
const Path = "blindpost/gateway/decision"

const query = "data.blindpost.gateway.decision"

// DefaultTimeout bounds one evaluation when Options.Timeout is zero.
const DefaultTimeout = 200 * time.Millisecond

// ReasonUnavailable is the only reason of a decision the policy could not
// make.
const ReasonUnavailable = "policy_unavailable"

// Obligations the bundle may attach to a decision; the gateway must honour
// each one it receives (see README.md, "Obligations").
const (
	// ObligationDeferUntil (allowed decisions, stage send): a string, an
	// RFC 3339 UTC instant; send no earlier, then decide again.
	ObligationDeferUntil = "defer_until"
	// ObligationReserve (allowed decisions, stage accept): a list of
	// {"key", "window_seconds", "limit"}; reserve one slot of each
	// atomically before acknowledging, or reject with ReasonFrequencyCap.
	ObligationReserve = "reserve"
	// ObligationHold (denied decisions whose only reason is
	// ReasonVolumeGuard): true; keep the message and alert instead of
	// rejecting it.
	ObligationHold = "hold"
	// ObligationListUnsubscribe (allowed marketing email): true; add
	// one-click unsubscribe headers (RFC 8058), or do not send.
	ObligationListUnsubscribe = "list_unsubscribe"
)

// Reasons the gateway acts on besides denying.
const (
	ReasonFrequencyCap = "frequency_cap"
	ReasonVolumeGuard  = "volume_guard"
)

var (
	// ErrNoBundle means the bundle holds no policy (.rego) file.
	ErrNoBundle = errors.New("policy: no policy bundle")
	// ErrUnavailable means no decision could be made (evaluation error,
	// time-out, undefined or malformed result); the message was denied and
	// may be retried.
	ErrUnavailable = errors.New("policy: unavailable")
)

// unsafeBuiltins are refused at compile time. The policy must not reach the
// network (the gateway sits inside the operator's network and never calls a
// URL a request could steer), and it must not depend on anything but its
// input and data, so that an auditor can replay any logged decision. The
// clock, in particular, is input.now, never the evaluator's own.
var unsafeBuiltins = map[string]struct{}{
	"http.send":          {},
	"net.lookup_ip_addr": {},
	"opa.runtime":        {},
	"time.now_ns":        {},
	"rand.intn":          {},
	"uuid.rfc4122":       {},
}

// Input is what the policy sees of one message. It carries derived
// attributes only, never an address or a name. Fields added after the first
// version are optional; the rules say what their absence means.
type Input struct {
	API          string   `json:"api"`   // native | compat
	Stage        string   `json:"stage"` // accept | send
	Tenant       string   `json:"tenant"`
	Brand        string   `json:"brand"`
	Channel      string   `json:"channel"`  // email | sms | im | push
	Category     string   `json:"category"` // transactional | marketing
	Purpose      string   `json:"purpose"`
	Placeholders []string `json:"placeholders"` // PII fields the template uses
	Subject      *Subject `json:"subject,omitempty"`

	// Now is the gateway's clock. Decide fills it from Options.Now when it
	// is zero, so callers normally leave it alone, and cuts it to the
	// minute: the policy's clock reads whole minutes.
	Now time.Time `json:"now,omitzero"`
	// FromDomain is the domain of the message's from address, when it has
	// one of its own (lower case preferred; compared case-insensitively).
	FromDomain string `json:"from_domain,omitempty"`
	// ToOverrideDomain is the domain of the compat API's to_email_address,
	// when activity_type redirects the message away from the player.
	ToOverrideDomain string `json:"to_override_domain,omitempty"`
	// ActivityType is the compat API's activity_type, when given.
	ActivityType string `json:"activity_type,omitempty"`
	// Counters holds, per "<category>/<channel>", how many messages of that
	// kind are already reserved for this recipient within the kind's
	// frequency-cap window (stage accept).
	Counters map[string]int `json:"counters,omitempty"`
	// TenantRatePerMinute is how many messages the tenant's core asked for
	// in the last 60 seconds, this one included (stage accept).
	TenantRatePerMinute int `json:"tenant_rate_per_minute,omitempty"`
}

// Subject is what the policy sees of the recipient's record, at send time.
type Subject struct {
	Pseudonym    string          `json:"pseudonym"`
	Country      string          `json:"country,omitempty"`
	LocalHour    int             `json:"local_hour"` // kept for compatibility; the rules use Timezone and Input.Now
	OptOuts      map[string]bool `json:"opt_outs"`
	Consents     map[string]bool `json:"consents"`
	SelfExcluded bool            `json:"self_excluded"`
	Addressable  bool            `json:"addressable"` // the record has an address for the channel

	// Timezone is the player's IANA time zone; empty: the brand's default.
	Timezone string `json:"timezone,omitempty"`
	// OptOutSince holds, per opt-out flag, when it was set.
	OptOutSince map[string]time.Time `json:"opt_out_since,omitempty"`
	// SnoozedUntil holds, per channel, when the player's marketing snooze
	// ends.
	SnoozedUntil map[string]time.Time `json:"snoozed_until,omitempty"`
}

// Decision is the policy's answer, with what the decision log needs.
type Decision struct {
	ID          string // unique and unguessable, names this decision in logs and callbacks
	Allow       bool
	Reasons     []string // sorted; empty when allowed
	Obligations map[string]any
	Revision    string // revision of the bundle that decided (Evaluator.Revision then)
	Path        string
	Time        time.Time
}

// Options configure an Evaluator. The zero value is usable.
type Options struct {
	Now     func() time.Time // default time.Now
	Timeout time.Duration    // per decision; default DefaultTimeout
	// Data, if set, is merged over the bundle's data.json (objects merge by
	// key, other values replace), so operators change settings such as the
	// PII allow-lists without editing the rules. It then counts towards the
	// revision, and applies to every reloaded bundle too.
	Data map[string]any
	// BundleKeys verify signed bundle tarballs (OpenBundle, ReloadFrom,
	// Watch). A tarball is never loaded without a key.
	BundleKeys []PublicKey
	// OnReloadError, if set, is called with the error of every failed
	// reload (the running bundle stays in place), so the operator can be
	// alerted. It must not block.
	OnReloadError func(error)
}

// Evaluator makes decisions with the current compiled bundle, which Reload
// replaces atomically. It is safe for concurrent use.
type Evaluator struct {
	cur     atomic.Pointer[compiled]
	now     func() time.Time
	timeout time.Duration
	opts    Options

	reloadMu sync.Mutex // one reload at a time
	reloads  atomic.Uint64
	failures atomic.Uint64
}

// New compiles the policy in bundle (all .rego files except _test.rego, and
// data.json) into a prepared query. It fails if there is no policy or it does
// not compile: a gateway without a policy must not start.
func New(ctx context.Context, bundle fs.FS, opts Options) (*Evaluator, error) {
	c, err := compile(ctx, bundle, opts.Data)
	if err != nil {
		return nil, err
	}
	e := &Evaluator{now: opts.Now, timeout: opts.Timeout, opts: opts}
	if e.now == nil {
		e.now = time.Now
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	e.cur.Store(c)
	return e, nil
}

// Revision identifies the policy in force: the hex SHA-256 of the bundle's
// files (and of Options.Data, when set).
func (e *Evaluator) Revision() string { return e.cur.Load().revision }

// Decide evaluates the policy for in. Any failure to decide denies: the
// decision then has Allow false, the single reason ReasonUnavailable, and the
// error wraps ErrUnavailable. A policy denial is not an error.
//
// If in.Now is zero, the policy sees the decision's time (Options.Now).
func (e *Evaluator) Decide(ctx context.Context, in Input) (Decision, error) {
	c := e.cur.Load() // one bundle for the whole decision, even during a reload
	d := Decision{
		ID:       newID(),
		Revision: c.revision,
		Path:     Path,
		Time:     e.now(),
	}
	in = in.withClock(d.Time)

	if err := c.eval(ctx, &in, e.timeout, d.Time, &d); err != nil {
		d.Allow, d.Reasons, d.Obligations = false, []string{ReasonUnavailable}, map[string]any{}
		return d, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return d, nil
}

// withClock returns in with Now set to t when it is zero, and cut to the
// minute. Decide and DecisionLog use it alike, so the log records the input
// the policy saw.
//
// The policy's clock reads whole minutes (UTC). Quiet hours are set in
// minutes; a snooze or a lapsing opt-out compared with an earlier clock
// ends up to 59 seconds later, which errs on the side of not sending. In
// exchange, every decision within a minute that reads the same input parts
// is the same decision, and the evaluator can reuse it (memo.go).
func (in Input) withClock(t time.Time) Input {
	if in.Now.IsZero() {
		in.Now = t
	}
	in.Now = in.Now.UTC().Truncate(time.Minute)
	return in
}

// evalError keeps the code and location of an evaluation error and drops
// its message, which may quote input values (a built-in's operands).
// `blindpost policy test` shows full messages for test fixtures.
func evalError(err error) error {
	var te *topdown.Error
	if errors.As(err, &te) {
		if te.Location != nil {
			return fmt.Errorf("%s: %s", te.Location, te.Code)
		}
		return errors.New(te.Code)
	}
	return errors.New("evaluation failed")
}

// decodeDecision fills d from the decision document. Anything but
// {allow: bool, reasons: [string], obligations: object} is an error, and so
// is allow with reasons, or a denial without one: the policy contradicts
// itself.
func decodeDecision(v ast.Value, d *Decision) error {
	obj, ok := v.(ast.Object)
	if !ok {
		return errors.New("decision is not an object")
	}
	allow, ok := field[ast.Boolean](obj, "allow")
	if !ok {
		return errors.New("decision.allow is not a boolean")
	}
	list, ok := field[*ast.Array](obj, "reasons")
	if !ok {
		return errors.New("decision.reasons is not an array")
	}
	reasons := make([]string, list.Len())
	for i := range reasons {
		s, ok := list.Elem(i).Value.(ast.String)
		if !ok {
			return errors.New("decision.reasons holds a non-string")
		}
		reasons[i] = string(s)
	}
	ob, ok := field[ast.Object](obj, "obligations")
	if !ok {
		return errors.New("decision.obligations is not an object")
	}
	obligations := map[string]any{}
	if ob.Len() > 0 {
		// Obligations are rare and small; OPA's own conversion gives the
		// JSON-shaped values callers expect (json.Number for numbers).
		m, err := ast.JSON(ob)
		if err != nil {
			return errors.New("decision.obligations is not JSON")
		}
		obligations = m.(map[string]any)
	}
	if allow && len(reasons) > 0 {
		return errors.New("decision allows with reasons")
	}
	if !allow && len(reasons) == 0 {
		return errors.New("decision denies without a reason")
	}
	d.Allow, d.Reasons, d.Obligations = bool(allow), reasons, obligations
	return nil
}

// field returns obj[key] if it is a T.
func field[T ast.Value](obj ast.Object, key string) (T, bool) {
	var zero T
	t := obj.Get(ast.InternedTerm(key))
	if t == nil {
		return zero, false
	}
	v, ok := t.Value.(T)
	return v, ok
}
