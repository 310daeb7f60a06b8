package blindpost.gateway_test

import data.blindpost.gateway

# marketing_send (basics_test.rego) with these consents.
marketing_with(consents) := json.patch(marketing_send, [
	{"op": "replace", "path": "/subject/consents", "value": consents},
])

test_marketing_with_consent_allowed if {
	every channel in ["email", "sms", "im", "push"] {
		req := object.union(marketing_with({sprintf("marketing_%s", [channel]): true}), {"channel": channel})
		gateway.decision.allow with input as req
	}
}

test_marketing_without_consent_denied if {
	gateway.deny == {"no_marketing_consent"} with input as marketing_with({})
}

test_marketing_consent_false_denied if {
	gateway.deny == {"no_marketing_consent"} with input as marketing_with({"marketing_email": false})
}

# Consent is per channel: SMS consent does not cover email.
test_consent_for_other_channel_denied if {
	gateway.deny == {"no_marketing_consent"} with input as marketing_with({"marketing_sms": true})
}

test_transactional_needs_no_consent if {
	gateway.decision.allow with input as send_request
}

# Consent lives in the record, which the gateway reads only at send time.
test_accept_does_not_check_consent if {
	gateway.decision.allow with input as object.union(accept_request, {"category": "marketing", "purpose": "promotion"})
}
