package blindpost.gateway_test

import data.blindpost.gateway

# marketing_send (basics_test.rego) with these opt-out flags, in this
# category. Marketing consent is given, so only the opt-out is under test.
with_opt_outs(flags, category) := json.patch(marketing_send, [
	{"op": "replace", "path": "/subject/opt_outs", "value": flags},
	{"op": "replace", "path": "/category", "value": category},
	{"op": "replace", "path": "/purpose", "value": purpose_for[category]},
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

# The snooze: marketing pauses on the snoozed channel until the instant
# given, then resumes. (Test clock: 2025-03-01T12:00:00Z.)
snoozed(req, channel, until) := json.patch(req, [{"op": "add", "path": "/subject/snoozed_until", "value": {channel: until}}])

test_snooze_pauses_marketing if {
	gateway.deny == {"snoozed"} with input as snoozed(marketing_send, "email", "2025-03-15T00:00:00Z")
}

test_snooze_ends if {
	gateway.decision.allow with input as snoozed(marketing_send, "email", "2025-03-01T11:59:59Z")

	# The instant it ends, marketing resumes.
	gateway.decision.allow with input as snoozed(marketing_send, "email", "2025-03-01T12:00:00Z")
}

test_snooze_is_per_channel if {
	gateway.decision.allow with input as snoozed(marketing_send, "sms", "2025-03-15T00:00:00Z")
}

test_snooze_lets_transactional_through if {
	gateway.decision.allow with input as snoozed(send_request, "email", "2025-03-15T00:00:00Z")
}

# A snooze given with a time zone offset is the same instant.
test_snooze_with_offset if {
	gateway.deny == {"snoozed"} with input as snoozed(marketing_send, "email", "2025-03-01T13:30:00+01:00")
}

# An unsubscribe never lapses by itself, however long ago it was set.
unsubscribed_since(since) := json.patch(with_opt_outs({"core_is_email_disabled": true}, "marketing"), [
	{"op": "add", "path": "/subject/opt_out_since", "value": {"core_is_email_disabled": since}},
])

test_unsubscribe_never_lapses_by_default if {
	gateway.deny == {"opted_out"} with input as unsubscribed_since("2020-01-01T00:00:00Z")
}

# An operator whose PAM stores the 30-day snooze as the unsubscribe flag can
# let the flag lapse after 30 days.
test_flag_lapses_when_operator_says_so if {
	gateway.decision.allow with input as unsubscribed_since("2025-01-29T12:00:00Z")
		with data.blindpost.settings as shipped_with("player_opt_out_lapses_after_days", 30)
	gateway.deny == {"opted_out"} with input as unsubscribed_since("2025-02-15T12:00:00Z")
		with data.blindpost.settings as shipped_with("player_opt_out_lapses_after_days", 30)
}

# Without the time it was set, a flag cannot be shown to have lapsed.
test_flag_without_time_never_lapses if {
	gateway.deny == {"opted_out"} with input as with_opt_outs({"core_is_email_disabled": true}, "marketing")
		with data.blindpost.settings as shipped_with("player_opt_out_lapses_after_days", 30)
}

# Platform flags never lapse, whatever the setting.
test_platform_flag_never_lapses if {
	req := json.patch(with_opt_outs({"core_is_email_disabled_by_platform": true}, "marketing"), [
		{"op": "add", "path": "/subject/opt_out_since", "value": {"core_is_email_disabled_by_platform": "2020-01-01T00:00:00Z"}},
	])
	gateway.deny == {"opted_out"} with input as req
		with data.blindpost.settings as shipped_with("player_opt_out_lapses_after_days", 30)
}

test_marketing_email_must_offer_one_click_unsubscribe if {
	gateway.decision.obligations.list_unsubscribe with input as with_opt_outs({}, "marketing")
}

test_no_unsubscribe_obligation_elsewhere if {
	not gateway.decision.obligations.list_unsubscribe with input as with_opt_outs({}, "transactional")
	not gateway.decision.obligations.list_unsubscribe with input as on_channel(with_opt_outs({}, "marketing"), "sms")
	not gateway.decision.obligations.list_unsubscribe with input as object.union(with_opt_outs({}, "marketing"), {"stage": "accept"})
	not gateway.decision.obligations.list_unsubscribe with input as with_opt_outs({"core_is_email_disabled": true}, "marketing")
}
