package blindpost.gateway

# Channels and categories the gateway knows how to handle. A request naming
# anything else is malformed; denying it here means a typo in the core can
# never fall through rules that only look at known values.
channels := {"email", "sms", "im", "push"}

categories := {"transactional", "marketing"}

stages := {"accept", "send"}

# Note for reviewers: every negation in this bundle negates a named rule
# (`not known_channel`), never an expression on input
# (`not input.channel in channels`). A negated expression whose input is
# missing can come out undefined instead of true, and a rule that should have
# denied would silently not fire.
deny contains "invalid_request" if not known_channel

deny contains "invalid_request" if not known_category

deny contains "invalid_request" if not known_stage

known_channel if input.channel in channels

known_category if input.category in categories

known_stage if input.stage in stages

# At send time the gateway must pass the recipient's attributes. Without
# them the opt-out and consent rules could not see anything, so a missing
# subject denies instead of silently skipping those checks.
deny contains "invalid_request" if {
	input.stage == "send"
	not has_subject
}

has_subject if is_object(input.subject)

# At send time the recipient's record must hold an address for the channel
# (an email address, a phone number, a chat id, a push token). The gateway
# computes `addressable` from the record; the address itself never reaches
# the policy.
deny contains "unknown_recipient" if {
	input.stage == "send"
	has_subject
	not addressable
}

addressable if input.subject.addressable == true
