package blindpost.gateway_test

import data.blindpost.gateway

# A well-formed transactional email as the gateway asks about it when the
# core's request arrives, and (send_request) just before sending it. Tests
# in the other files start from these and change what they test.
accept_request := {
	"api": "native", "stage": "accept",
	"tenant": "t1", "brand": "b1",
	"channel": "email", "category": "transactional",
	"purpose": "password_reset", "placeholders": [],
	"now": "2025-03-01T12:00:00Z",
}

send_request := object.union(accept_request, {
	"stage": "send",
	"subject": {
		"pseudonym": "p_test", "local_hour": 12,
		"country": "MT", "timezone": "Europe/Malta",
		"opt_outs": {}, "consents": {},
		"self_excluded": false, "addressable": true,
	},
})

# A purpose allowed in each category by the shipped settings.
purpose_for := {"transactional": "password_reset", "marketing": "promotion"}

# A marketing email the player agreed to, sent at noon their time: nothing
# objects. Tests of the marketing rules start from it.
marketing_send := json.patch(send_request, [
	{"op": "replace", "path": "/category", "value": "marketing"},
	{"op": "replace", "path": "/purpose", "value": "promotion"},
	{"op": "replace", "path": "/subject/consents", "value": {
		"marketing_email": true, "marketing_sms": true,
		"marketing_im": true, "marketing_push": true,
	}},
])

test_marketing_fixture_allowed if {
	gateway.decision.allow with input as marketing_send
}

# The shipped settings with one setting replaced, to test a rule apart from
# the shipped values. (The settings are replaced as a whole: OPA merges a
# `with` on data.blindpost.settings.<name> into the settings around it.)
shipped_with(name, value) := json.patch(data.blindpost.settings, [{"op": "add", "path": concat("/", ["", name]), "value": value}])

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

# The gateway always says whether the record has an address; a subject
# without it is malformed.
test_addressable_missing_invalid if {
	req := json.patch(send_request, [{"op": "remove", "path": "/subject/addressable"}])
	gateway.deny == {"invalid_request"} with input as req
}

# At accept time there is no subject yet; that is not a reason to deny.
test_accept_needs_no_subject if {
	not "unknown_recipient" in gateway.deny with input as accept_request
}

test_unknown_api_invalid if {
	"invalid_request" in gateway.deny with input as object.union(accept_request, {"api": "graphql"})
}

# The rules about time need the gateway's clock at send time.
test_send_without_clock_invalid if {
	"invalid_request" in gateway.deny with input as object.remove(send_request, ["now"])
}

test_accept_needs_no_clock if {
	gateway.decision.allow with input as object.remove(accept_request, ["now"])
}
