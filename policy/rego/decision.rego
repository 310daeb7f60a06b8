# Package blindpost.gateway is the operator's policy for the blindpost gateway.
#
# The gateway asks one question, data.blindpost.gateway.decision, twice for
# every message: when the core's request arrives (stage "accept", no player
# data yet) and again just before sending (stage "send", with the derived
# attributes of the recipient's record in input.subject). The core can ask;
# only this policy decides.
#
# Every other file in this package is one concern: it adds reasons to deny
# a message, and some add obligations. This file combines them and is the
# only place that says "allow". Read it first, then settings.rego (where the
# operator's settings come from), then the concerns:
#
#   the message itself, at both stages (message_deny):
#     basics, purpose, pii_fields, sender, compat
#   its delivery (delivery_deny):
#     at accept:  volume_guard, frequency_caps
#     at send:    basics, optout, consent, self_exclusion, countries,
#                 quiet_hours
#
# Operator settings live in data.json, not in the rules.
package blindpost.gateway

# The decision document the gateway evaluates. A message may go out only if
# no concern objects: a single reason denies. Reasons are sorted so that the
# same input always gives the same, comparable decision in the audit log.
#
# There is deliberately no `default decision`: if this rule ever became
# undefined, the gateway treats that as "policy unavailable" and denies.
decision := {
	"allow": count(deny) == 0,
	"reasons": sort(deny),
	"obligations": obligations,
}

# The reasons to deny: those found in the message itself (what the core
# asked for: its kind, purpose, template, sender, recipient override), and
# those found in its delivery (the player, the time, the traffic). The
# first depend on nothing but the message, so the gateway may reuse them
# for identical messages; see "Performance" in README.md.
deny := message_deny | delivery_deny

# Obligations are instructions the gateway must follow with the decision.
# Each is defined in the file of its concern, as obligations.<name>:
#
#   defer_until  quiet_hours.rego     allowed, but send no earlier than this
#                                     instant (RFC 3339, UTC)
#   reserve      frequency_caps.rego  allowed if the gateway reserves these
#                                     frequency-cap slots atomically
#   hold         volume_guard.rego    denied only for volume: keep the
#                                     message and alert, do not reject it
#   list_unsubscribe  optout.rego     allowed with one-click unsubscribe
#                                     headers (RFC 8058) on the email
#
# With no obligation, obligations is the empty object {}.
