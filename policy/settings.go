package policy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrSettings means the bundle's settings (data.json, with Options.Data)
// fail the bundle's own checks (data.blindpost.gateway.settings_errors).
var ErrSettings = errors.New("policy: invalid settings")

var settingsErrorsRef = ast.MustParseRef("data.blindpost.gateway.settings_errors")

// checkSettings asks the bundle for the errors in the settings of the
// defaults, of every tenant and of every brand named in data, and fails
// if there is any: a gateway must not start, or reload, with settings its
// rules would misread. A bundle without settings_errors is not checked.
func (c *compiled) checkSettings(ctx context.Context, data map[string]any) error {
	if len(c.compiler.GetRulesExact(settingsErrorsRef)) == 0 {
		return nil
	}
	body, err := c.compiler.QueryCompiler().Compile(ast.NewBody(ast.Equality.Expr(ast.NewTerm(resultVar), ast.NewTerm(settingsErrorsRef))))
	if err != nil {
		return fmt.Errorf("policy: compile settings check: %w", err)
	}
	type scope struct{ tenant, brand string }
	scopes := []scope{{"", ""}} // the defaults
	blindpost, _ := data["blindpost"].(map[string]any)
	tenants, _ := blindpost["tenants"].(map[string]any)
	for _, t := range slices.Sorted(maps.Keys(tenants)) {
		scopes = append(scopes, scope{t, ""})
		tenant, _ := tenants[t].(map[string]any)
		brands, _ := tenant["brands"].(map[string]any)
		for _, b := range slices.Sorted(maps.Keys(brands)) {
			scopes = append(scopes, scope{t, b})
		}
	}

	txn, err := c.store.NewTransaction(ctx)
	if err != nil {
		return fmt.Errorf("policy: settings check: %w", err)
	}
	defer c.store.Abort(ctx, txn)
	var problems []string
	for _, s := range scopes {
		in := ast.NewObject(
			ast.Item(keyTenant, ast.StringTerm(s.tenant)),
			ast.Item(keyBrand, ast.StringTerm(s.brand)),
		)
		rs, err := topdown.NewQuery(body).
			WithCompiler(c.compiler).
			WithStore(c.store).
			WithTransaction(txn).
			WithInput(ast.NewTerm(in)).
			Run(ctx) // built-in errors are undefined here: the checks report them
		where := "defaults"
		switch {
		case s.brand != "":
			where = fmt.Sprintf("tenant %q brand %q", s.tenant, s.brand)
		case s.tenant != "":
			where = fmt.Sprintf("tenant %q", s.tenant)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		if len(rs) != 1 {
			continue
		}
		set, ok := rs[0][resultVar].Value.(ast.Set)
		if !ok {
			return fmt.Errorf("%w: settings_errors is not a set", ErrSettings)
		}
		sorted := set.Sorted()
		for i := range sorted.Len() {
			msg, _ := sorted.Elem(i).Value.(ast.String)
			problems = append(problems, fmt.Sprintf("%s: %s", where, string(msg)))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrSettings, strings.Join(problems, "; "))
	}
	return nil
}
