package blindpost.gateway

# Runs at: accept (when the core asks).
#
# A compromised core could try to blast the whole player base in minutes.
# The gateway counts how many messages each tenant's core asked for in the
# last 60 seconds, this one included, and passes it as
# input.tenant_rate_per_minute. Above the tenant's limit (setting
# "volume_guard": {"max_per_minute": N}), the message is not sent: it is
# denied with the reason "volume_guard" and, when that is the only reason,
# carries the obligation "hold": true.
#
# "hold" tells the gateway to keep the message instead of rejecting it and
# to alert the operator, who can release held traffic once they have
# checked it is legitimate, or drop it. Any other reason next to
# "volume_guard" is a final denial.
#
# Without a rate in the input, or without the setting, there is no guard.
delivery_deny contains "volume_guard" if {
	input.stage == "accept"
	input.tenant_rate_per_minute
	input.tenant_rate_per_minute > settings.volume_guard.max_per_minute
}

obligations["hold"] if {
	input.stage == "accept"
	deny == {"volume_guard"}
}
