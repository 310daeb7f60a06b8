package blindpost.gateway

# Runs at: both stages.
#
# Which of the player's personal fields a message may carry.
#
# The core writes templates with placeholders such as {{pii.first_name}}; the
# gateway fills them from the recipient's record at send time. The core
# cannot see those values, but it chooses the template, so a compromised
# core could try to make the gateway write a player's email address or phone
# number into a message and read it back somewhere else. This concern limits
# the damage: each category and channel may use only the fields on the
# operator's allow-list (setting "pii_fields").
#
# input.placeholders lists the field names the template uses, so this check
# runs at both stages: at accept time a forbidden template is refused before
# it is queued, and at send time the same check is repeated.
#
# A category or channel missing from the settings allows no field at all, so
# a gap in the settings denies rather than allows.
message_deny contains "pii_field_not_allowed" if {
	some field in input.placeholders
	not field in object.get(settings, ["pii_fields", input.category, input.channel], [])
}
