package blindpost.gateway

# Where the operator's settings come from.
#
# The rules in this bundle never hard-code an operator's choices (which
# purposes count as transactional, how many marketing emails a week, which
# sender domains, ...). They read them from data.json, which has three
# levels:
#
#   data.blindpost.settings                                    defaults for everyone
#   data.blindpost.tenants[<tenant>].settings                  one operator (tenant)
#   data.blindpost.tenants[<tenant>].brands[<brand>].settings  one of its brands
#
# The settings of a message are the defaults, with its tenant's settings
# laid over them, and its brand's over those. Objects are merged key by key
# (a brand that sets quiet hours for "sms" keeps the default quiet hours of
# the other channels); anything else, a list in particular, replaces what
# is below it (a brand's "sender_domains" is its whole list).
#
# A setting missing at every level is undefined: each rule says what that
# means for it, and where a missing allow-list could let something through,
# it denies. Without any defaults at all, or without a tenant and a brand in
# the input, there are no settings: every allow-list is empty.
default settings := {}

settings := object.union(
	object.union(
		data.blindpost.settings,
		object.get(tenants, [input.tenant, "settings"], {}),
	),
	object.get(tenants, [input.tenant, "brands", input.brand, "settings"], {}),
)

# The tenants with settings of their own; without any, every tenant has the
# defaults.
default tenants := {}

tenants := data.blindpost.tenants

# The settings, by name, and the file that reads each:
#
#   purposes                          purpose.rego
#   pii_fields                        pii_fields.rego
#   sender_domains                    sender.rego
#   compat_override_domains           compat.rego
#   volume_guard                      volume_guard.rego
#   frequency_caps                    frequency_caps.rego
#   self_exclusion_purposes           self_exclusion.rego
#   player_opt_out_lapses_after_days  optout.rego
#   allowed_countries, country_rules  countries.rego
#   quiet_hours, default_timezone     quiet_hours.rego
