package blindpost.gateway_test

import data.blindpost.gateway

# send_request (basics_test.rego) with these opt-out flags and category.
with_opt_outs(flags, category) := json.patch(send_request, [
	{"op": "replace", "path": "/subject/opt_outs", "value": flags},
	{"op": "replace", "path": "/category", "value": category},
	# Marketing needs consent; give it so only the opt-out is under test.
	{"op": "replace", "path": "/subject/consents", "value": {
		"marketing_email": true, "marketing_sms": true,
		"marketing_im": true, "marketing_push": true,
	}},
])

on_channel(req, channel) := object.union(req, {"channel": channel})

test_platform_flag_blocks_every_category if {
	every c in [
		["email", "core_is_email_disabled_by_platform"],
		["sms", "core_is_sms_disabled_by_platform"],
		["push", "core_is_push_disabled_by_platform"],
	] {
		every category in ["transactional", "marketing"] {
			req := on_channel(with_opt_outs({c[1]: true}, category), c[0])
			gateway.deny == {"opted_out"} with input as req
		}
	}
}

test_player_flag_blocks_marketing if {
	every c in [["email", "core_is_email_disabled"], ["sms", "core_is_sms_disabled"]] {
		req := on_channel(with_opt_outs({c[1]: true}, "marketing"), c[0])
		gateway.deny == {"opted_out"} with input as req
	}
}

# The player's unsubscribe is marketing-only: a password reset still goes out.
test_player_flag_allows_transactional if {
	every c in [["email", "core_is_email_disabled"], ["sms", "core_is_sms_disabled"]] {
		req := on_channel(with_opt_outs({c[1]: true}, "transactional"), c[0])
		gateway.decision.allow with input as req
	}
}

# A flag only blocks its own channel.
test_flag_on_other_channel_ignored if {
	req := on_channel(with_opt_outs({"core_is_email_disabled_by_platform": true}, "marketing"), "sms")
	gateway.decision.allow with input as req
}

test_flag_false_ignored if {
	req := with_opt_outs({"core_is_email_disabled_by_platform": false, "core_is_email_disabled": false}, "marketing")
	gateway.decision.allow with input as req
}

# No opt-out flag is defined for instant messages yet.
test_im_has_no_flags if {
	req := on_channel(with_opt_outs({"core_is_email_disabled_by_platform": true, "core_is_sms_disabled_by_platform": true}, "marketing"), "im")
	gateway.decision.allow with input as req
}

# At accept time there is no subject, so opt-outs cannot deny yet; they are
# checked again at send time.
test_accept_ignores_opt_outs if {
	not "opted_out" in gateway.deny with input as accept_request
}
