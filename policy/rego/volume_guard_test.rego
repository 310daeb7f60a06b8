package blindpost.gateway_test

import data.blindpost.gateway

at_rate(req, rate) := object.union(req, {"tenant_rate_per_minute": rate})

test_below_limit_allowed if {
	gateway.decision.allow with input as at_rate(accept_request, 6000)
}

# Above the limit the message is denied for volume only and held, not
# rejected.
test_above_limit_held if {
	d := gateway.decision with input as at_rate(accept_request, 6001)
	d.allow == false
	d.reasons == ["volume_guard"]
	d.obligations == {"hold": true}
}

# With another reason too, the denial is final: no hold.
test_other_reason_no_hold if {
	req := at_rate(object.union(accept_request, {"purpose": "promotion"}), 6001)
	d := gateway.decision with input as req
	d.reasons == ["purpose_not_allowed", "volume_guard"]
	d.obligations == {}
}

# The limit is per tenant: the shipped example tenant has 600 a minute.
test_tenant_limit if {
	gateway.deny == {"volume_guard"} with input as object.union(at_rate(accept_request, 601), {"tenant": "example"})
}

# The guard watches what the core asks for, at accept time.
test_not_at_send_time if {
	gateway.decision.allow with input as at_rate(send_request, 1000000)
}

test_no_rate_no_guard if {
	gateway.decision.allow with input as accept_request
}

test_no_setting_no_guard if {
	gateway.decision.allow with input as at_rate(accept_request, 1000000)
		with data.blindpost.settings as shipped_with("volume_guard", {})
}
