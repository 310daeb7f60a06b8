package blindpost.gateway_test

import data.blindpost.gateway

accept_request := {
	"api": "native", "stage": "accept",
	"channel": "email", "category": "transactional",
	"placeholders": [],
}

send_request := object.union(accept_request, {
	"stage": "send",
	"subject": {
		"pseudonym": "p_test", "local_hour": 12,
		"opt_outs": {}, "consents": {},
		"self_excluded": false, "addressable": true,
	},
})

test_known_request_allowed if {
	gateway.decision.allow with input as accept_request
	gateway.decision.allow with input as send_request
}

test_unknown_channel_invalid if {
	"invalid_request" in gateway.deny with input as object.union(accept_request, {"channel": "fax"})
}

test_unknown_category_invalid if {
	"invalid_request" in gateway.deny with input as object.union(accept_request, {"category": "promotional"})
}

test_missing_channel_invalid if {
	"invalid_request" in gateway.deny with input as object.remove(accept_request, ["channel"])
}

test_unknown_stage_invalid if {
	"invalid_request" in gateway.deny with input as object.union(accept_request, {"stage": "later"})
}

test_send_without_subject_invalid if {
	"invalid_request" in gateway.deny with input as object.union(accept_request, {"stage": "send"})
}

test_unaddressable_subject_unknown_recipient if {
	req := json.patch(send_request, [{"op": "replace", "path": "/subject/addressable", "value": false}])
	gateway.deny == {"unknown_recipient"} with input as req
}

test_addressable_missing_unknown_recipient if {
	req := json.patch(send_request, [{"op": "remove", "path": "/subject/addressable"}])
	gateway.deny == {"unknown_recipient"} with input as req
}

# At accept time there is no subject yet; that is not a reason to deny.
test_accept_needs_no_subject if {
	not "unknown_recipient" in gateway.deny with input as accept_request
}
