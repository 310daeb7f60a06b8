# Package blindpost.gateway is the operator's policy for the blindpost gateway.
#
# The gateway asks one question, data.blindpost.gateway.decision, twice for
# every message: when the core's request arrives (stage "accept", no player
# data yet) and again just before sending (stage "send", with the derived
# attributes of the recipient's record in input.subject). The core can ask;
# only this policy decides.
#
# Every other file in this package adds reasons to the set `deny`, one file
# per concern. This file combines them and is the only place that says
# "allow". Read it first, then basics.rego, optout.rego, consent.rego and
# pii_fields.rego. Operator settings live in data.json, not in the rules.
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

# Obligations are instructions that come with an allowed message (for example
# "defer until 08:00 local time" for quiet hours). No concern sets any yet.
obligations := {}
