package blindpost.gateway

# Runs at: accept (when the core asks).
#
# A player receives at most N messages of a kind within a window, per kind
# "<category>/<channel>" (setting "frequency_caps", e.g. "marketing/email":
# {"limit": 3, "window_seconds": 604800}, three marketing emails in any 7
# days). A kind without an entry is not capped.
#
# How it is enforced, so that concurrent requests cannot overshoot a cap:
#
#  1. The gateway passes, in input.counters["<category>/<channel>"], how
#     many messages of this kind it has already reserved for this recipient
#     within the window. At or above the limit, the message is denied with
#     the reason "frequency_cap". (A missing counter counts as 0.)
#  2. Otherwise the allowed decision carries the obligation
#     "reserve": [{"key": "<category>/<channel>", "window_seconds": W,
#     "limit": L}]. The gateway must reserve one slot atomically (count and
#     insert in one transaction) before it acknowledges the message; if the
#     slot is gone by then, a concurrent request won the race, and the
#     message is rejected with "frequency_cap" as if the policy had said so.
#
# The cap denies rather than defers: a promotion held back for days until a
# slot frees up would arrive stale, and the core learns at once that it
# should plan differently. The counters are reserved when the message is
# accepted, so the check is not repeated at send time (it would count the
# message itself).
delivery_deny contains "frequency_cap" if {
	input.stage == "accept"
	cap := settings.frequency_caps[message_kind]
	sent_in_window >= cap.limit
}

obligations["reserve"] := [{
	"key": message_kind,
	"window_seconds": cap.window_seconds,
	"limit": cap.limit,
}] if {
	input.stage == "accept"
	count(deny) == 0
	cap := settings.frequency_caps[message_kind]
}

# How many messages of this kind the player was sent in the cap's window,
# as the gateway counted them (none, if it sent no count).
default sent_in_window := 0

sent_in_window := input.counters[message_kind]

# The kind of message, e.g. "marketing/sms".
message_kind := concat("/", [input.category, input.channel])
