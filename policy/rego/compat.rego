package blindpost.gateway

# Runs at: both stages.
#
# The compatibility API (input.api == "compat") accepts requests shaped like
# the reference vendor's. One of its features lets the core send an email to
# an address of its choosing instead of the player's: activity_type
# "preview" (a campaign preview) or "EmailCustomerSupport" (a copy for the
# support team), with to_email_address. The gateway passes only that
# address's domain, as input.to_override_domain.
#
# Why: a message sent to an address the core chooses can carry a player's
# personal fields to anyone. The override is therefore allowed only
#   - through the compat API (the native API has no such feature),
#   - for those two activity types,
#   - on email, and
#   - to a domain on the tenant's list (setting "compat_override_domains",
#     in lower case), typically the operator's staff domain.
# The shipped list is empty: no override until the operator names its own
# domain. The player's own rules (opt-outs, consent, quiet hours) still
# apply to the message as if it went to the player.
message_deny contains "recipient_override_not_allowed" if {
	input.to_override_domain
	not recipient_override_allowed
}

recipient_override_allowed if {
	input.api == "compat"
	input.channel == "email"
	input.activity_type in {"preview", "EmailCustomerSupport"}
	lower(input.to_override_domain) in settings.compat_override_domains
}
