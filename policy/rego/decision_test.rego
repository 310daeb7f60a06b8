package blindpost.gateway_test

import data.blindpost.gateway

# A well-formed transactional email at accept time: nothing objects.
test_allows_when_no_reason if {
	d := gateway.decision with input as {
		"api": "native", "stage": "accept",
		"channel": "email", "category": "transactional",
		"placeholders": ["first_name"],
	}
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
