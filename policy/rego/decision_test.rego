package blindpost.gateway_test

import data.blindpost.gateway

# A well-formed transactional email at accept time: nothing objects and
# nothing is obliged.
test_allows_when_no_reason if {
	d := gateway.decision with input as object.union(accept_request, {"placeholders": ["first_name"]})
	d.allow == true
	d.reasons == []
	d.obligations == {}
}

# One reason is enough to deny, and it is reported.
test_single_reason_denies if {
	d := gateway.decision with gateway.deny as {"opted_out"}
	d.allow == false
	d.reasons == ["opted_out"]
}

# Reasons come out sorted, whatever order the concerns produced them in.
test_reasons_sorted if {
	d := gateway.decision with gateway.deny as {"self_excluded", "no_marketing_consent", "opted_out"}
	d.reasons == ["no_marketing_consent", "opted_out", "self_excluded"]
}

# Obligations that need an allowed message are not given with a denial:
# a denied marketing message at night is neither deferred nor reserved.
test_denial_carries_no_allow_obligations if {
	night := object.union(marketing_send, {"now": "2025-03-01T23:00:00Z", "purpose": "password_reset"})
	d := gateway.decision with input as night
	d.allow == false
	d.obligations == {}
	a := gateway.decision with input as object.union(accept_request, {"category": "marketing", "purpose": "password_reset"})
	a.allow == false
	a.obligations == {}
}
