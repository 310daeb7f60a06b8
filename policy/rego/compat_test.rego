package blindpost.gateway_test

import data.blindpost.gateway

# A compat API preview for the shipped example tenant, whose staff domain is
# staff.example.com.
preview := object.union(accept_request, {
	"api": "compat", "tenant": "example", "brand": "example-casino",
	"activity_type": "preview", "to_override_domain": "staff.example.com",
})

test_preview_to_staff_domain_allowed if {
	gateway.decision.allow with input as preview
	gateway.decision.allow with input as object.union(preview, {"activity_type": "EmailCustomerSupport"})
	gateway.decision.allow with input as object.union(preview, {"to_override_domain": "Staff.Example.com"})
}

test_other_domain_denied if {
	gateway.deny == {"recipient_override_not_allowed"} with input as object.union(preview, {"to_override_domain": "attacker.example.net"})
}

# The list is per tenant: another tenant cannot use this one's staff domain.
test_other_tenant_denied if {
	gateway.deny == {"recipient_override_not_allowed"} with input as object.union(preview, {"tenant": "t1"})
}

# The native API has no override.
test_native_api_denied if {
	gateway.deny == {"recipient_override_not_allowed"} with input as object.union(preview, {"api": "native"})
}

test_other_activity_type_denied if {
	gateway.deny == {"recipient_override_not_allowed"} with input as object.union(preview, {"activity_type": "campaign"})
	gateway.deny == {"recipient_override_not_allowed"} with input as object.remove(preview, ["activity_type"])
}

test_override_on_sms_denied if {
	gateway.deny == {"recipient_override_not_allowed"} with input as object.union(preview, {"channel": "sms"})
}

# The shipped default list is empty.
test_default_list_allows_nothing if {
	gateway.deny == {"recipient_override_not_allowed"} with input as object.union(preview, {"tenant": "t1", "brand": "b1"})
}

# Without an override the compat API is an ordinary request.
test_compat_without_override_allowed if {
	gateway.decision.allow with input as object.remove(preview, ["to_override_domain"])
}

# An override does not loosen the player's own rules.
test_override_keeps_player_rules if {
	req := json.patch(marketing_send, [
		{"op": "replace", "path": "/api", "value": "compat"},
		{"op": "replace", "path": "/tenant", "value": "example"},
		{"op": "add", "path": "/activity_type", "value": "preview"},
		{"op": "add", "path": "/to_override_domain", "value": "staff.example.com"},
		{"op": "replace", "path": "/subject/consents", "value": {}},
	])
	gateway.deny == {"no_marketing_consent"} with input as req
}
