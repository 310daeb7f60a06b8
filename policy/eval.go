package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// compiled is one bundle, ready to decide. It never changes after compile;
// Reload replaces it as a whole.
//
// It drives OPA's evaluator (topdown) directly on a query compiled once,
// rather than through the rego package: per decision, that skips building
// an evaluation context, metrics and a result set, and converting the
// result to Go values, which together cost as much as a small policy.
type compiled struct {
	compiler *ast.Compiler
	query    ast.Body
	store    storage.Store
	memos    []*memo // see memo.go
	revision string
}

// resultVar names the decision in the compiled query's bindings.
const resultVar = ast.Var("decision")

// compile loads and compiles the production policy of bundle, with the
// operator's override data merged over its data.json.
func compile(ctx context.Context, bundle fs.FS, data map[string]any) (*compiled, error) {
	b, err := loadBundle(bundle, false)
	if err != nil {
		return nil, err
	}
	rev := b.revision
	if data != nil {
		// A round trip through JSON copies the caller's map, so later changes
		// to it cannot reach the store, and rejects values JSON cannot hold.
		raw, err := json.Marshal(data)
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
		// "/" cannot start a file name in an fs.FS, so these entries cannot
		// collide with a bundle file.
		rev = revision(map[string][]byte{"/bundle": []byte(b.revision), "/options.data": raw})
	}

	// The same restrictions as `blindpost policy test` (RunTests): strict
	// mode, and the unsafe built-ins are not even known to the compiler.
	compiler := ast.NewCompiler().
		WithCapabilities(safeCapabilities()).
		WithStrict(true).
		WithDefaultRegoVersion(ast.RegoV1)
	if compiler.Compile(b.modules); compiler.Failed() {
		return nil, fmt.Errorf("policy: compile bundle: %w", compiler.Errors)
	}
	q := ast.NewBody(ast.Equality.Expr(ast.NewTerm(resultVar), ast.MustParseTerm(query)))
	body, err := compiler.QueryCompiler().Compile(q)
	if err != nil {
		return nil, fmt.Errorf("policy: compile query: %w", err)
	}
	// The settings are read on every decision: kept as AST values, they are
	// not converted from Go values each time. Nothing ever writes to the
	// store.
	store := inmem.NewFromObjectWithOpts(b.data, inmem.OptReturnASTValuesOnRead(true))

	c := &compiled{compiler: compiler, query: body, store: store, memos: newMemos(compiler), revision: rev}
	if err := c.checkSettings(ctx, b.data); err != nil {
		return nil, err
	}
	return c, nil
}

// noMetrics is shared by every evaluation: nothing reads OPA's metrics.
var noMetrics = metrics.NoOp()

// eval evaluates the decision for input into d, within timeout.
func (c *compiled) eval(ctx context.Context, in *Input, timeout time.Duration, now time.Time, d *Decision) error {
	ctx, cancelCtx := context.WithTimeout(ctx, timeout)
	defer cancelCtx()
	input := in.value()
	vc, missed := memoized(c.memos, input)
	err := c.decide(ctx, input, vc, now, d)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%w)", err, cerr)
		}
		return err
	}
	remember(c.memos, vc, missed)
	return nil
}

func (c *compiled) decide(ctx context.Context, input ast.Value, vc topdown.VirtualCache, now time.Time, d *Decision) error {
	txn, err := c.store.NewTransaction(ctx)
	if err != nil {
		return fmt.Errorf("open store transaction: %w", err)
	}
	defer c.store.Abort(ctx, txn)

	// The evaluator polls cancel between steps; the context cancels it
	// when the deadline passes or the caller gives up. (AfterFunc starts no
	// goroutine unless that happens.)
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()

	q := topdown.NewQuery(c.query)
	if vc != nil {
		q = q.WithVirtualCache(vc)
	}
	rs, err := q.
		WithCompiler(c.compiler).
		WithStore(c.store).
		WithTransaction(txn).
		WithInput(ast.NewTerm(input)).
		WithCancel(cancel).
		WithMetrics(noMetrics).
		WithTime(now). // time.now_ns is refused; this only spares a clock read
		WithIndexing(true).
		WithEarlyExit(true).
		WithStrictBuiltinErrors(true).
		Run(ctx)
	if err != nil {
		return evalError(err)
	}
	if len(rs) == 0 {
		return errors.New("decision is undefined")
	}
	if len(rs) != 1 {
		return errors.New("decision is not a single value")
	}
	t, ok := rs[0][resultVar]
	if !ok {
		return errors.New("decision is undefined")
	}
	return decodeDecision(t.Value, d)
}
