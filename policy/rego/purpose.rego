package blindpost.gateway

# Runs at: both stages.
#
# Every message names its purpose ("password_reset", "promotion", ...), and
# the purpose must be on the brand's list for the message's category
# (setting "purposes").
#
# Why: the category decides which protections apply. Transactional messages
# skip marketing consent, the unsubscribe flags, quiet hours and marketing
# frequency caps, so a core that labelled a promotion "transactional" would
# bypass all of them. Tying each purpose to one category means marketing
# cannot pass as transactional by label alone: a "promotion" labelled
# transactional is denied.
#
# A category missing from the settings allows no purpose.
message_deny contains "purpose_not_allowed" if not purpose_allowed

purpose_allowed if input.purpose in settings.purposes[input.category]
