// Package policy decides, for the gateway, whether a message may be sent.
//
// It sits on the operator's side of the trust boundary, inside the gateway:
// the core asks for messages, the operator's Rego bundle (policy/rego/)
// decides. The evaluator runs OPA in-process on a query prepared once, and
// fails closed: a missing or broken bundle stops the gateway from starting,
// and an evaluation that errs, times out or answers nonsense denies the
// message with the reason "policy_unavailable" and ErrUnavailable, which the
// gateway treats as retryable.
//
// The policy sees derived attributes only (flags, consents, country, local
// hour, placeholder names), never an address: see Input.
//
// This package imports neither the gateway nor the core.
package policy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
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
// input and data, so that an auditor can replay any logged decision.
var unsafeBuiltins = map[string]struct{}{
	"http.send":          {},
	"net.lookup_ip_addr": {},
	"opa.runtime":        {},
	"time.now_ns":        {},
	"rand.intn":          {},
	"uuid.rfc4122":       {},
}

// Input is what the policy sees of one message. It carries derived
// attributes only, never an address or a name.
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
}

// Subject is what the policy sees of the recipient's record, at send time.
type Subject struct {
	Pseudonym    string          `json:"pseudonym"`
	Country      string          `json:"country,omitempty"`
	LocalHour    int             `json:"local_hour"`
	OptOuts      map[string]bool `json:"opt_outs"`
	Consents     map[string]bool `json:"consents"`
	SelfExcluded bool            `json:"self_excluded"`
	Addressable  bool            `json:"addressable"` // the record has an address for the channel
}

// Decision is the policy's answer, with what the decision log needs.
type Decision struct {
	ID          string // random, names this decision in logs and callbacks
	Allow       bool
	Reasons     []string // sorted; empty when allowed
	Obligations map[string]any
	Revision    string // Evaluator.Revision of the bundle that decided
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
	// revision.
	Data map[string]any
}

// Evaluator makes decisions with one compiled bundle. It is safe for
// concurrent use.
type Evaluator struct {
	pq       rego.PreparedEvalQuery
	revision string
	now      func() time.Time
	timeout  time.Duration
}

// New compiles the policy in bundle (all .rego files except _test.rego, and
// data.json) into a prepared query. It fails if there is no policy or it does
// not compile: a gateway without a policy must not start.
func New(ctx context.Context, bundle fs.FS, opts Options) (*Evaluator, error) {
	b, err := loadBundle(bundle, false)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte(nil)
	if opts.Data != nil {
		// A round trip through JSON copies the caller's map, so later changes
		// to it cannot reach the store, and rejects values JSON cannot hold.
		raw, err := json.Marshal(opts.Data)
		if err != nil {
			return nil, fmt.Errorf("policy: options data: %w", err)
		}
		var override map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&override); err != nil {
			return nil, fmt.Errorf("policy: options data: %w", err)
		}
		b.data = mergeData(b.data, override)
		// "/" cannot start a file name in an fs.FS, so this entry cannot
		// collide with a bundle file.
		files = map[string][]byte{"/bundle": []byte(b.revision), "/options.data": raw}
	}

	r := []func(*rego.Rego){
		rego.Query(query),
		rego.Store(inmem.NewFromObject(b.data)),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Strict(true),
		rego.StrictBuiltinErrors(true),
		rego.UnsafeBuiltins(unsafeBuiltins),
	}
	for _, m := range b.modules {
		r = append(r, rego.ParsedModule(m))
	}
	pq, err := rego.New(r...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: compile bundle: %w", err)
	}

	e := &Evaluator{pq: pq, revision: b.revision, now: opts.Now, timeout: opts.Timeout}
	if files != nil {
		e.revision = revision(files)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	return e, nil
}

// Revision identifies the loaded policy: the hex SHA-256 of the bundle's
// files (and of Options.Data, when set).
func (e *Evaluator) Revision() string { return e.revision }

// Decide evaluates the policy for in. Any failure to decide denies: the
// decision then has Allow false, the single reason ReasonUnavailable, and the
// error wraps ErrUnavailable. A policy denial is not an error.
func (e *Evaluator) Decide(ctx context.Context, in Input) (Decision, error) {
	d := Decision{
		ID:       newID(),
		Revision: e.revision,
		Path:     Path,
		Time:     e.now(),
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()

	rs, err := e.pq.Eval(ctx, rego.EvalParsedInput(in.value()))
	if err != nil {
		err = evalError(err)
	} else {
		err = d.decode(rs)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		d.Allow, d.Reasons, d.Obligations = false, []string{ReasonUnavailable}, map[string]any{}
		return d, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return d, nil
}

// decode fills d from the result of the query. Anything but exactly one
// {allow: bool, reasons: [string], obligations: object} is an error, and so
// is allow with reasons: the policy contradicts itself.
func (d *Decision) decode(rs rego.ResultSet) error {
	if len(rs) == 0 {
		return errors.New("decision is undefined")
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return errors.New("decision is not a single value")
	}
	obj, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return errors.New("decision is not an object")
	}
	allow, ok := obj["allow"].(bool)
	if !ok {
		return errors.New("decision.allow is not a boolean")
	}
	list, ok := obj["reasons"].([]any)
	if !ok {
		return errors.New("decision.reasons is not an array")
	}
	reasons := make([]string, 0, len(list))
	for _, r := range list {
		s, ok := r.(string)
		if !ok {
			return errors.New("decision.reasons holds a non-string")
		}
		reasons = append(reasons, s)
	}
	obligations, ok := obj["obligations"].(map[string]any)
	if !ok {
		return errors.New("decision.obligations is not an object")
	}
	if allow && len(reasons) > 0 {
		return errors.New("decision allows with reasons")
	}
	if !allow && len(reasons) == 0 {
		return errors.New("decision denies without a reason")
	}
	d.Allow, d.Reasons, d.Obligations = allow, reasons, obligations
	return nil
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

// newID returns 16 random bytes in hex.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// value builds the policy input as an AST value directly, which is cheaper
// than OPA's JSON round trip of the struct. It must equal the struct's JSON
// (nil slices and maps are null), which is what a decision log records, so
// that any logged decision can be replayed; a test holds it to that.
func (in Input) value() ast.Value {
	placeholders := ast.NullTerm() // as encoding/json writes a nil slice
	if in.Placeholders != nil {
		ts := make([]*ast.Term, len(in.Placeholders))
		for i, p := range in.Placeholders {
			ts[i] = ast.StringTerm(p)
		}
		placeholders = ast.ArrayTerm(ts...)
	}
	obj := ast.NewObject(
		ast.Item(ast.StringTerm("api"), ast.StringTerm(in.API)),
		ast.Item(ast.StringTerm("stage"), ast.StringTerm(in.Stage)),
		ast.Item(ast.StringTerm("tenant"), ast.StringTerm(in.Tenant)),
		ast.Item(ast.StringTerm("brand"), ast.StringTerm(in.Brand)),
		ast.Item(ast.StringTerm("channel"), ast.StringTerm(in.Channel)),
		ast.Item(ast.StringTerm("category"), ast.StringTerm(in.Category)),
		ast.Item(ast.StringTerm("purpose"), ast.StringTerm(in.Purpose)),
		ast.Item(ast.StringTerm("placeholders"), placeholders),
	)
	if s := in.Subject; s != nil {
		sub := ast.NewObject(
			ast.Item(ast.StringTerm("pseudonym"), ast.StringTerm(s.Pseudonym)),
			ast.Item(ast.StringTerm("local_hour"), ast.IntNumberTerm(s.LocalHour)),
			ast.Item(ast.StringTerm("opt_outs"), flags(s.OptOuts)),
			ast.Item(ast.StringTerm("consents"), flags(s.Consents)),
			ast.Item(ast.StringTerm("self_excluded"), ast.BooleanTerm(s.SelfExcluded)),
			ast.Item(ast.StringTerm("addressable"), ast.BooleanTerm(s.Addressable)),
		)
		if s.Country != "" {
			sub.Insert(ast.StringTerm("country"), ast.StringTerm(s.Country))
		}
		obj.Insert(ast.StringTerm("subject"), ast.NewTerm(sub))
	}
	return obj
}

func flags(m map[string]bool) *ast.Term {
	if m == nil {
		return ast.NullTerm() // as encoding/json writes a nil map
	}
	obj := ast.NewObject()
	for k, v := range m {
		obj.Insert(ast.StringTerm(k), ast.BooleanTerm(v))
	}
	return ast.NewTerm(obj)
}
