package blindpost.gateway_test

import data.blindpost.gateway

errors_with(name, value) := errors if {
	errors := gateway.settings_errors with data.blindpost.settings as shipped_with(name, value)
		with input as {"tenant": "t1", "brand": "b1"}
}

# The shipped settings, and those of the example tenant, are valid.
test_shipped_settings_valid if {
	count(gateway.settings_errors) == 0 with input as {"tenant": "t1", "brand": "b1"}
	count(gateway.settings_errors) == 0 with input as {"tenant": "example", "brand": "example-casino"}
}

test_quiet_hours_need_two_digit_times if {
	errors_with("quiet_hours", {"sms": {"start": "9:00", "end": "07:00"}}) == {`quiet_hours.sms.start: want a time of day as HH:MM, got 9:00`}
	count(errors_with("quiet_hours", {"sms": {"start": "24:00", "end": "07:00"}})) == 1
	count(errors_with("quiet_hours", {"sms": {"start": "21:00"}})) == 1
	count(errors_with("quiet_hours", {"sms": {"start": "21:00", "end": 7}})) == 1
}

test_caps_need_positive_whole_numbers if {
	count(errors_with("frequency_caps", {"marketing/email": {"limit": 0, "window_seconds": 60}})) == 1
	count(errors_with("frequency_caps", {"marketing/email": {"limit": 1.5, "window_seconds": 60}})) == 1
	count(errors_with("frequency_caps", {"marketing/email": {"limit": 3}})) == 1
	count(errors_with("frequency_caps", {"marketing/email": {"limit": 3, "window_seconds": 60}})) == 0
}

test_volume_guard_needs_a_positive_rate if {
	count(errors_with("volume_guard", {"max_per_minute": "lots"})) == 1
	count(errors_with("volume_guard", {"max_per_minute": 0})) == 1
}

test_lapse_days_whole_number if {
	count(errors_with("player_opt_out_lapses_after_days", -1)) == 1
	count(errors_with("player_opt_out_lapses_after_days", 30)) == 0
}

test_lists_of_strings if {
	count(errors_with("sender_domains", "example.com")) == 1
	count(errors_with("sender_domains", ["Example.com"])) == 1
	count(errors_with("allowed_countries", ["mt"])) == 1
	count(errors_with("allowed_countries", ["MT", "*"])) == 0
}

test_objects_and_lists if {
	count(errors_with("quiet_hours", "21:00-09:00")) == 1
	count(errors_with("purposes", {"transactional": "password_reset"})) == 1
}

# (An unknown time zone is an error of time.clock, which these tests raise;
# the Go test TestNewRefusesInvalidSettings covers it.)
test_default_timezone_known if {
	count(errors_with("default_timezone", "Europe/Malta")) == 0
	count(errors_with("default_timezone", 1)) == 1
}
