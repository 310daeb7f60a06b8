package blindpost.gateway

# Runs at: send (consents come from the player's record).
#
# Marketing needs the player's explicit consent for the channel it uses, in
# the player's record: "marketing_email", "marketing_sms", "marketing_im" or
# "marketing_push" set to true. A missing consent counts as "no": silence
# is not consent.
delivery_deny contains "no_marketing_consent" if {
	input.stage == "send"
	input.category == "marketing"
	input.channel == "email"
	not input.subject.consents.marketing_email == true
}

delivery_deny contains "no_marketing_consent" if {
	input.stage == "send"
	input.category == "marketing"
	input.channel == "sms"
	not input.subject.consents.marketing_sms == true
}

delivery_deny contains "no_marketing_consent" if {
	input.stage == "send"
	input.category == "marketing"
	input.channel == "im"
	not input.subject.consents.marketing_im == true
}

delivery_deny contains "no_marketing_consent" if {
	input.stage == "send"
	input.category == "marketing"
	input.channel == "push"
	not input.subject.consents.marketing_push == true
}
