package blindpost.gateway

# Runs at: both stages.
#
# A request must name a channel, category, stage and API the gateway knows.
# Anything else is malformed ("invalid_request"); denying it here means a
# typo in the core can never fall through rules that only look at known
# values.
#
# Note for reviewers: every negation in this bundle negates a named rule
# (`not known_message`), a comparison with `==`, or a lookup with a default
# (object.get), never a function call on a field that may be missing
# (`not input.channel in channels`). Rego evaluates a missing field in a
# function call before the `not`, and the whole rule, instead of denying,
# would silently not fire.
message_deny contains "invalid_request" if not known_message

known_message if {
	input.channel in {"email", "sms", "im", "push"}
	input.category in {"transactional", "marketing"}
	input.stage in {"accept", "send"}
	input.api in {"native", "compat"}
}

# At send time the gateway must also pass the recipient's attributes
# (input.subject, including whether the record has an address for the
# channel) and its clock (input.now, RFC 3339). Without the first, the
# opt-out and consent rules could not see anything; without the second, the
# rules about time (quiet hours, snoozes) could not tell night from day.
# Either missing denies instead of silently skipping those checks.
delivery_deny contains "invalid_request" if {
	input.stage == "send"
	not ready_to_send
}

ready_to_send if {
	is_boolean(input.subject.addressable) # so input.subject is an object
	is_string(input.now)
}

# At send time the recipient's record must hold an address for the channel
# (an email address, a phone number, a chat id, a push token). The gateway
# computes `addressable` from the record; the address itself never reaches
# the policy.
delivery_deny contains "unknown_recipient" if {
	input.stage == "send"
	input.subject.addressable == false
}

# The current time, in nanoseconds since 1970 (UTC).
now_ns := time.parse_rfc3339_ns(input.now)

ns_per_minute := 60000000000 # 60 s of 10^9 ns

ns_per_day := 86400000000000 # 24 h of 60 min
