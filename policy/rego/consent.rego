package blindpost.gateway

# Marketing needs the player's explicit consent for the channel it uses
# (consent "marketing_email", "marketing_sms", "marketing_im" or
# "marketing_push" set to true in the player's record). A missing consent
# counts as "no": silence is not consent.
#
# Consents come from the player's record, so they are checked at send time
# only (input.subject is present only then).
deny contains "no_marketing_consent" if {
	input.category == "marketing"
	has_subject
	not has_marketing_consent
}

has_marketing_consent if input.subject.consents[concat("_", ["marketing", input.channel])] == true

# A self-excluded player has asked not to be tempted to gamble: no marketing
# at all, on any channel, whatever consents the record still holds.
# Transactional messages (password reset, payment receipt, the confirmation
# of the self-exclusion itself) still go out.
deny contains "self_excluded" if {
	input.category == "marketing"
	input.subject.self_excluded == true
}
