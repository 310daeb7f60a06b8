package blindpost.gateway_test

import data.blindpost.gateway

self_excluded(req) := json.patch(req, [{"op": "replace", "path": "/subject/self_excluded", "value": true}])

test_self_excluded_gets_no_marketing if {
	every channel in ["email", "sms", "im", "push"] {
		gateway.deny == {"self_excluded"} with input as self_excluded(object.union(marketing_send, {"channel": channel}))
	}
}

# Account and money matters still reach a self-excluded player.
test_self_excluded_gets_listed_transactional if {
	every purpose in ["password_reset", "payment_receipt", "account_security", "self_exclusion_confirmation"] {
		gateway.decision.allow with input as self_excluded(object.union(send_request, {"purpose": purpose}))
	}
}

# A transactional purpose allowed for other players is not necessarily
# allowed for a self-excluded one.
test_self_excluded_unlisted_transactional_denied if {
	req := self_excluded(object.union(send_request, {"purpose": "deposit_confirmation"}))
	gateway.deny == {"self_excluded"} with input as req
	gateway.decision.allow with input as object.union(send_request, {"purpose": "deposit_confirmation"})
}

# The list is the operator's: without one, no transactional either.
test_self_excluded_without_list_gets_nothing if {
	gateway.deny == {"self_excluded"} with input as self_excluded(send_request)
		with data.blindpost.settings as shipped_with("self_exclusion_purposes", [])
}

test_not_self_excluded_unaffected if {
	req := json.patch(send_request, [{"op": "replace", "path": "/subject/self_excluded", "value": false}])
	gateway.decision.allow with input as object.union(req, {"purpose": "deposit_confirmation"})
}

# Self-exclusion is in the record, read only at send time.
test_accept_does_not_check_self_exclusion if {
	gateway.decision.allow with input as object.union(accept_request, {"category": "marketing", "purpose": "promotion"})
}
