package blindpost.gateway_test

import data.blindpost.gateway

with_purpose(req, category, purpose) := object.union(req, {"category": category, "purpose": purpose})

test_listed_purposes_allowed if {
	gateway.decision.allow with input as with_purpose(accept_request, "transactional", "password_reset")
	gateway.decision.allow with input as with_purpose(accept_request, "marketing", "promotion")
}

# Marketing cannot pass as transactional by label alone.
test_promotion_labelled_transactional_denied if {
	gateway.deny == {"purpose_not_allowed"} with input as with_purpose(accept_request, "transactional", "promotion")
	gateway.deny == {"purpose_not_allowed"} with input as with_purpose(send_request, "transactional", "promotion")
}

# Nor the other way round: a purpose belongs to one category.
test_transactional_purpose_labelled_marketing_denied if {
	gateway.deny == {"purpose_not_allowed"} with input as with_purpose(accept_request, "marketing", "password_reset")
}

test_unknown_purpose_denied if {
	gateway.deny == {"purpose_not_allowed"} with input as with_purpose(accept_request, "transactional", "anything")
}

test_missing_purpose_denied if {
	gateway.deny == {"purpose_not_allowed"} with input as object.remove(accept_request, ["purpose"])
}

# A category missing from the settings allows no purpose.
test_missing_settings_allow_nothing if {
	gateway.deny == {"purpose_not_allowed"} with input as accept_request
		with data.blindpost.settings as shipped_with("purposes", {"marketing": ["promotion"]})
}

# Each brand has its own lists.
test_brand_list_applies if {
	brand := {"t1": {"brands": {"b1": {"settings": {"purposes": {"transactional": ["kyc_reminder"]}}}}}}
	gateway.decision.allow with input as with_purpose(accept_request, "transactional", "kyc_reminder")
		with data.blindpost.tenants as brand
	gateway.deny == {"purpose_not_allowed"} with input as accept_request
		with data.blindpost.tenants as brand
}
