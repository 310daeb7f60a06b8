package policy

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Reusing rule values between decisions.
//
// Some rules of the bundle depend on little of the input: the settings of a
// brand (settings.rego) on the tenant and brand names; the reasons found in
// the message itself (message_deny) on the message's kind, purpose,
// placeholders and domains; whether a brand may send to a country, and the
// time zone of a player, on those names and the player's country or zone.
// Many decisions share those, and working them out again costs, in all,
// several times a trivial policy's whole decision. So the
// evaluator keeps their values, per compiled bundle, keyed by exactly the
// parts of the input they read, and hands a kept value to a later decision
// with the same key, as OPA's own per-decision cache does within one
// decision. The rules stay the only definition of what they compute: the
// evaluator never computes them itself, it remembers what the bundle said.
//
// A rule is remembered only if that is provably sound. When the bundle is
// compiled, the evaluator follows the rule and every rule it refers to,
// transitively, and collects the parts of the input they read. It gives up
// on the rule (and evaluates it every time) if any of them reads the input
// through a key only known at evaluation time (input[x]), reads the whole
// input, or uses `with`. Base data (data.json) cannot change under a
// compiled bundle, and the unsafe built-ins (the clock, randomness, the
// network) are not available to the bundle at all, so the value of such a
// rule is a function of the input parts collected.
//
// The first is the decision itself. Its key holds every input part the
// bundle reads (never the subject's pseudonym: no rule reads it), and the
// clock to the minute (see Input.withClock), so the recipients of one
// campaign with the same attributes share one decision per minute. When it
// is kept, the others are not looked up.
var memoRefs = []ast.Ref{
	ast.MustParseRef(query),
	ast.MustParseRef("data.blindpost.gateway.settings"),
	ast.MustParseRef("data.blindpost.gateway.message_deny"),
	ast.MustParseRef("data.blindpost.gateway.country_allowed"),
	ast.MustParseRef("data.blindpost.gateway.player_timezone"),
}

var decisionRef = ast.MustParseRef(query)

// maxMemoEntries bounds each rule's memo; when full, it starts afresh.
const maxMemoEntries = 4096

// memo remembers the values of one rule.
type memo struct {
	ref   ast.Ref
	paths []ast.Ref // the input parts the rule reads, without the leading "input"

	mu   sync.RWMutex
	vals map[string]*ast.Term // nil value: the rule is undefined
}

// newMemos returns a memo for each rule of memoRefs the bundle defines and
// that depends on known parts of the input only.
func newMemos(compiler *ast.Compiler) []*memo {
	var ms []*memo
	for _, ref := range memoRefs {
		rules := compiler.GetRulesExact(ref)
		if len(rules) == 0 {
			continue
		}
		if paths, ok := inputPaths(compiler, rules); ok {
			ms = append(ms, &memo{ref: ref, paths: paths, vals: map[string]*ast.Term{}})
		}
	}
	return ms
}

// inputPaths returns the parts of the input that rules, and the rules they
// refer to, read; ok is false if a rule may read the input in a way a key
// cannot capture.
func inputPaths(compiler *ast.Compiler, rules []*ast.Rule) (paths []ast.Ref, ok bool) {
	ok = true
	seen := map[*ast.Rule]bool{}
	found := map[string]ast.Ref{}
	var visit func(rules []*ast.Rule)
	visit = func(rules []*ast.Rule) {
		for _, r := range rules {
			if seen[r] || !ok {
				continue
			}
			seen[r] = true
			ast.WalkExprs(r, func(e *ast.Expr) bool {
				if len(e.With) > 0 {
					ok = false
				}
				return false
			})
			ast.WalkRefs(r, func(ref ast.Ref) bool {
				switch {
				case ref.HasPrefix(ast.InputRootRef):
					p := ref.GroundPrefix()
					if len(p) < 2 {
						ok = false
						return true
					}
					found[p.String()] = p[1:].Copy()
				case ref.HasPrefix(ast.DefaultRootRef):
					// Rules it may read (none for base data).
					visit(compiler.GetRules(ref))
				}
				return false
			})
		}
	}
	visit(rules)
	if !ok {
		return nil, false
	}
	for _, k := range slices.Sorted(maps.Keys(found)) {
		paths = append(paths, found[k])
	}
	return paths, true
}

// key identifies the parts of input the rule reads: each part's value, or
// a mark for an undefined part. Strings are written with their length, so
// no two different inputs share a key; other values in Rego syntax.
func (m *memo) key(input ast.Value) string {
	var b strings.Builder
	b.Grow(128)
	b.WriteByte('k') // never empty: memoized uses "" for "kept"
	for _, p := range m.paths {
		v, _ := input.Find(p) // an error means undefined: v is nil
		switch v := v.(type) {
		case nil:
			b.WriteByte('-')
		case ast.String:
			b.WriteByte('s')
			b.WriteString(strconv.Itoa(len(v)))
			b.WriteByte(':')
			b.WriteString(string(v))
		default:
			b.WriteByte('v')
			b.WriteString(v.String())
			b.WriteByte(0)
		}
	}
	return b.String()
}

// memoized prepares one decision: it puts every kept value that applies to
// input into a fresh per-decision cache, and returns the cache and, for
// the rules without a kept value, their keys (to keep them afterwards).
func memoized(ms []*memo, input ast.Value) (topdown.VirtualCache, []string) {
	if len(ms) == 0 {
		return nil, nil
	}
	vc := topdown.NewVirtualCache()
	missed := make([]string, len(ms))
	for i, m := range ms {
		k := m.key(input)
		m.mu.RLock()
		t, hit := m.vals[k]
		m.mu.RUnlock()
		if hit {
			vc.Put(m.ref, t)
			if m.ref.Equal(decisionRef) {
				// The whole decision is known: nothing else will be read.
				clear(missed)
				return vc, missed
			}
		} else {
			missed[i] = k
		}
	}
	return vc, missed
}

// remember keeps, after a decision, the values the evaluation worked out
// for the rules that had none kept.
func remember(ms []*memo, vc topdown.VirtualCache, missed []string) {
	for i, m := range ms {
		k := missed[i]
		if k == "" {
			continue
		}
		t, undefined := vc.Get(m.ref)
		if t == nil && !undefined {
			continue // not evaluated in this decision
		}
		m.mu.Lock()
		if len(m.vals) >= maxMemoEntries {
			clear(m.vals)
		}
		m.vals[k] = t
		m.mu.Unlock()
	}
}
