package blindpost.gateway

# Runs at: send (the flags come from the player's record).
#
# Opt-out flags, as the reference vendor names them on the player's profile
# (DESIGN.md section 1). The gateway copies them from the player's record
# into input.subject.opt_outs; they exist only at send time.
#
# Two kinds of flag, with two different meanings.
#
# Platform flags are set by the operator's PAM: the operator may not, or
# must not, reach this player on this channel at all (closed account,
# bouncing address, a regulator's or a court's order). They block every
# category, transactional included. The reference vendor defines no flag for
# instant messages.
delivery_deny contains "opted_out" if {
	input.channel == "email"
	input.subject.opt_outs.core_is_email_disabled_by_platform == true
}

delivery_deny contains "opted_out" if {
	input.channel == "sms"
	input.subject.opt_outs.core_is_sms_disabled_by_platform == true
}

delivery_deny contains "opted_out" if {
	input.channel == "push"
	input.subject.opt_outs.core_is_push_disabled_by_platform == true
}

# Player flags are set by the player on the unsubscribe page. Operators
# expect them to work like the reference vendor's: unsubscribing stops
# marketing only. A password reset, a payment receipt or a
# responsible-gambling notice must still reach the player, so transactional
# messages ignore these flags. (Whether a message really is transactional is
# purpose.rego's job, not this file's.) No player flag is defined for push
# or instant messages.
delivery_deny contains "opted_out" if {
	input.category == "marketing"
	input.channel == "email"
	input.subject.opt_outs.core_is_email_disabled == true
	not player_flag_lapsed("core_is_email_disabled")
}

delivery_deny contains "opted_out" if {
	input.category == "marketing"
	input.channel == "sms"
	input.subject.opt_outs.core_is_sms_disabled == true
	not player_flag_lapsed("core_is_sms_disabled")
}

# The unsubscribe page's 30-day snooze.
#
# The reference vendor's unsubscribe page lets a player pause marketing for
# 30 days instead of leaving for good; after the 30 days, marketing resumes
# on its own. This bundle keeps the two apart:
#
#  - An unsubscribe (the player flag above) lasts until the player
#    subscribes again. It never lapses by itself: an opt-out that expired
#    silently would not be an opt-out.
#  - A snooze is input.subject.snoozed_until[<channel>], the instant (RFC
#    3339) the pause ends. Until then, no marketing on that channel (reason
#    "snoozed"); from then on, marketing resumes if nothing else objects.
#    A snooze stops marketing rather than deferring it: a promotion held for
#    30 days would arrive stale.
delivery_deny contains "snoozed" if {
	input.category == "marketing"
	input.subject.snoozed_until
	now_ns < time.parse_rfc3339_ns(input.subject.snoozed_until[input.channel])
}

# Some PAMs record the snooze with the unsubscribe flag itself, plus the time
# it was set (input.subject.opt_out_since[<flag>], RFC 3339). For those, and
# only if the operator says so (setting "player_opt_out_lapses_after_days",
# e.g. 30), a player flag set longer ago than that no longer blocks
# marketing. The shipped setting is 0: flags never lapse. A flag without a
# time never lapses either.
player_flag_lapsed(flag) if {
	days := settings.player_opt_out_lapses_after_days
	days > 0
	since := time.parse_rfc3339_ns(input.subject.opt_out_since[flag])
	now_ns - since > days * ns_per_day
}

# Every marketing email carries a one-click way out (RFC 8058): the gateway
# adds List-Unsubscribe and List-Unsubscribe-Post headers pointing at its
# own unsubscribe page, which sets core_is_email_disabled in the player's
# record. Mail providers expect it of bulk senders, and a player must never
# need to log in to stop marketing.
obligations["list_unsubscribe"] if {
	input.stage == "send"
	input.category == "marketing"
	input.channel == "email"
	count(deny) == 0
}
