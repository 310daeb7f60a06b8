package blindpost.gateway

# Opt-out flags, as the reference vendor names them on the player's profile
# (DESIGN.md section 1). The gateway copies them from the player's record
# into input.subject.opt_outs; they exist only at send time, so at accept
# time these rules see nothing and deny nothing.
#
# Two kinds of flag, with two different meanings:
#
# Platform flags are set by the operator's PAM: the operator may not, or
# must not, reach this player on this channel at all (closed account,
# bouncing address, a regulator's or a court's order). They block every
# category, transactional included.
platform_optout_flags := {
	"email": {"core_is_email_disabled_by_platform"},
	"sms": {"core_is_sms_disabled_by_platform"},
	"push": {"core_is_push_disabled_by_platform"},
	# The reference vendor defines no flag for instant messages yet.
	"im": set(),
}

# Player flags are set by the player on the unsubscribe page. Operators
# expect them to work like the reference vendor's: unsubscribing stops
# marketing only. A password reset, a payment receipt or a
# responsible-gambling notice must still reach the player, so transactional
# messages ignore these flags. (Whether a message really is transactional is
# the purpose allow-list's job, not this file's.) The unsubscribe page's
# 30-day snooze is kept in the record: the policy sees the flag as it stands
# when the message is sent.
player_optout_flags := {
	"email": {"core_is_email_disabled"},
	"sms": {"core_is_sms_disabled"},
	# No player flag is defined for push or instant messages yet.
	"push": set(),
	"im": set(),
}

deny contains "opted_out" if {
	some flag in platform_optout_flags[input.channel]
	input.subject.opt_outs[flag] == true
}

deny contains "opted_out" if {
	input.category == "marketing"
	some flag in player_optout_flags[input.channel]
	input.subject.opt_outs[flag] == true
}
