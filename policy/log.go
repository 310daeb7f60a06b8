package policy

import (
	"time"

	"github.com/open-policy-agent/opa/v1/version"
)

// BundleName names the policy bundle in decision logs ("bundles").
const BundleName = "blindpost"

// DecisionLog is one decision in OPA's decision-log event shape (the JSON
// an OPA server's decision-log plugin writes), so that tools that read
// OPA's logs read the gateway's too:
//
//	{"labels": {...}, "decision_id": "…", "bundles": {"blindpost": {"revision": "…"}},
//	 "path": "blindpost/gateway/decision", "input": {...},
//	 "result": {"allow": …, "reasons": [...], "obligations": {...}},
//	 "timestamp": "…"}
//
// The input is the policy's own input: derived attributes, the player named
// only by their random pseudonym, never an address, a phone number or a
// name. Replaying the input against the bundle of that revision gives the
// same result.
type DecisionLog struct {
	Labels     map[string]string     `json:"labels"`
	DecisionID string                `json:"decision_id"`
	Bundles    map[string]BundleInfo `json:"bundles"`
	Path       string                `json:"path"`
	Input      Input                 `json:"input"`
	Result     DecisionResult        `json:"result"`
	Timestamp  time.Time             `json:"timestamp"` // UTC
}

// BundleInfo is a bundle's entry in DecisionLog.Bundles.
type BundleInfo struct {
	Revision string `json:"revision"`
}

// DecisionResult is the decision document the policy returned (or, when
// the policy could not decide, the denial the evaluator made instead:
// reason ReasonUnavailable).
type DecisionResult struct {
	Allow       bool           `json:"allow"`
	Reasons     []string       `json:"reasons"`
	Obligations map[string]any `json:"obligations"`
}

// Log returns d in OPA's decision-log shape. in must be the Input passed to
// the Decide call that made d; its clock is filled in as Decide filled it,
// so the logged input is the one the policy saw.
//
// Labels name the software ("app", "opa_version") and the stage; callers
// may add their own (a gateway instance id, say) before writing the entry.
func (d Decision) Log(in Input) DecisionLog {
	reasons, obligations := d.Reasons, d.Obligations
	if reasons == nil {
		reasons = []string{}
	}
	if obligations == nil {
		obligations = map[string]any{}
	}
	return DecisionLog{
		Labels: map[string]string{
			"app":         "blindpost",
			"opa_version": version.Version,
			"stage":       in.Stage,
		},
		DecisionID: d.ID,
		Bundles:    map[string]BundleInfo{BundleName: {Revision: d.Revision}},
		Path:       d.Path,
		Input:      in.withClock(d.Time),
		Result:     DecisionResult{Allow: d.Allow, Reasons: reasons, Obligations: obligations},
		Timestamp:  d.Time.UTC(),
	}
}
