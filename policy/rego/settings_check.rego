package blindpost.gateway

# Runs at: load. The gateway checks the settings of the defaults and of
# every tenant and brand in data.json when it loads the bundle, and refuses
# a bundle with any error here: a setting written wrongly could otherwise
# make a rule quietly do the wrong thing (a quiet-hours window "9:00" would
# compare wrongly with "21:00"), or fail every decision of a brand.
#
# settings_errors holds one message per error, naming the setting.

settings_errors contains sprintf("quiet_hours.%s.%s: want a time of day as HH:MM, got %v", [channel, edge, value]) if {
	some channel, window in settings.quiet_hours
	some edge in ["start", "end"]
	value := object.get(window, edge, null)
	not time_of_day(value)
}

time_of_day(s) if {
	is_string(s)
	regex.match(`^([01][0-9]|2[0-3]):[0-5][0-9]$`, s)
}

settings_errors contains sprintf("frequency_caps.%s.%s: want a whole number above 0, got %v", [kind, field, value]) if {
	some kind, cap in settings.frequency_caps
	some field in ["limit", "window_seconds"]
	value := object.get(cap, field, null)
	not positive_integer(value)
}

settings_errors contains sprintf("volume_guard.max_per_minute: want a whole number above 0, got %v", [value]) if {
	value := object.get(settings.volume_guard, "max_per_minute", null)
	not positive_integer(value)
}

settings_errors contains sprintf("player_opt_out_lapses_after_days: want a whole number, 0 or more, got %v", [value]) if {
	value := settings.player_opt_out_lapses_after_days
	not non_negative_integer(value)
}

positive_integer(n) if {
	is_number(n)
	n == floor(n)
	n > 0
}

non_negative_integer(n) if {
	is_number(n)
	n == floor(n)
	n >= 0
}

# The allow-lists must be lists of strings; a country or domain in the
# wrong case would never match (the rules compare domains in lower case and
# countries in upper case).
settings_errors contains sprintf("%s: want a list of strings", [name]) if {
	some name in ["sender_domains", "compat_override_domains", "allowed_countries", "self_exclusion_purposes"]
	value := settings[name]
	not strings_list(value)
}

strings_list(l) if {
	is_array(l)
	every x in l {
		is_string(x)
	}
}

settings_errors contains sprintf("%s: %q must be in lower case", [name, domain]) if {
	some name in ["sender_domains", "compat_override_domains"]
	some domain in settings[name]
	is_string(domain)
	domain != lower(domain)
}

settings_errors contains sprintf("allowed_countries: %q must be in upper case", [country]) if {
	some country in settings.allowed_countries
	is_string(country)
	country != upper(country)
}

settings_errors contains sprintf("%s: want an object", [name]) if {
	some name in ["purposes", "pii_fields", "quiet_hours", "frequency_caps", "country_rules", "volume_guard"]
	value := settings[name]
	not is_object(value)
}

settings_errors contains sprintf("purposes.%s: want a list of strings", [category]) if {
	some category, list in settings.purposes
	not strings_list(list)
}

# The default time zone must be one the gateway knows (an IANA name such as
# "Europe/Malta").
settings_errors contains sprintf("default_timezone: unknown time zone %v", [tz]) if {
	tz := settings.default_timezone
	not known_timezone(tz)
}

known_timezone(tz) if {
	is_string(tz)
	time.clock([0, tz])
}
