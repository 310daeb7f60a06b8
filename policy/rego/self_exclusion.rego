package blindpost.gateway

# Runs at: send (self-exclusion comes from the player's record).
#
# A self-excluded player has asked not to be tempted to gamble. They get no
# marketing at all, on any channel, whatever consents the record still
# holds.
delivery_deny contains "self_excluded" if {
	input.category == "marketing"
	input.subject.self_excluded == true
}

# They still get the transactional messages they need to manage their
# account and money: only the purposes on the brand's list (setting
# "self_exclusion_purposes": password resets, payment receipts, account
# security, the confirmation of the self-exclusion itself, ...). Any other
# transactional purpose, even one allowed for other players, is denied.
delivery_deny contains "self_excluded" if {
	input.category == "transactional"
	input.subject.self_excluded == true
	not purpose_allowed_when_self_excluded
}

purpose_allowed_when_self_excluded if input.purpose in settings.self_exclusion_purposes
