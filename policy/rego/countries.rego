package blindpost.gateway

# Runs at: send (the country comes from the player's record).
#
# Where a brand may send, by the player's country (input.subject.country,
# ISO 3166-1 alpha-2, e.g. "MT"). Operators are licensed country by country,
# and some countries restrict some kinds of message.
#
# 1. The brand's countries (setting "allowed_countries", in upper case).
#    ["*"] means every country. Otherwise a player in another country, or
#    whose record names no country, gets nothing from this brand (reason
#    "country_not_allowed"). A missing setting allows no country.
delivery_deny contains "country_not_allowed" if {
	input.stage == "send"
	not country_allowed
}

country_allowed if "*" in settings.allowed_countries

country_allowed if upper(input.subject.country) in settings.allowed_countries

# 2. Per-country restrictions (setting "country_rules"): for a country, the
#    channels each category may not use, e.g.
#    "country_rules": {"US": {"blocked": {"marketing": ["sms"]}}}: no
#    marketing SMS to players in the US (reason "country_restricted"). A
#    country without rules restricts nothing.
delivery_deny contains "country_restricted" if {
	input.stage == "send"
	input.channel in settings.country_rules[upper(input.subject.country)].blocked[input.category]
}
