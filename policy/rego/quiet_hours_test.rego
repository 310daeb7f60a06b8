package blindpost.gateway_test

import data.blindpost.gateway

# marketing_send (basics_test.rego) at this instant, for a player in this
# time zone. Shipped quiet hours: 21:00-09:00 on every channel.
marketing_at(now, tz) := json.patch(marketing_send, [
	{"op": "replace", "path": "/now", "value": now},
	{"op": "replace", "path": "/subject/timezone", "value": tz},
])

# The decision allows and defers until the given instant. (A marketing
# email also carries list_unsubscribe: see optout_test.rego.)
deferred_until(req, until) if {
	d := gateway.decision with input as req
	d.allow == true
	object.remove(d.obligations, {"list_unsubscribe"}) == {"defer_until": until}
}

# The decision allows with no deferral.
sent_now(req) if {
	d := gateway.decision with input as req
	d.allow == true
	object.remove(d.obligations, {"list_unsubscribe"}) == {}
}

test_daytime_not_deferred if {
	sent_now(marketing_at("2025-01-15T12:00:00Z", "Europe/London"))
}

test_night_deferred_to_morning if {
	deferred_until(marketing_at("2025-01-15T23:00:00Z", "Europe/London"), "2025-01-16T09:00:00Z")
}

test_early_morning_deferred_to_same_morning if {
	deferred_until(marketing_at("2025-01-15T03:00:00Z", "Europe/London"), "2025-01-15T09:00:00Z")
}

# The window includes its start and excludes its end.
test_window_boundaries if {
	sent_now(marketing_at("2025-01-15T20:59:59Z", "Europe/London"))
	deferred_until(marketing_at("2025-01-15T21:00:00Z", "Europe/London"), "2025-01-16T09:00:00Z")
	deferred_until(marketing_at("2025-01-15T08:59:59Z", "Europe/London"), "2025-01-15T09:00:00Z")
	sent_now(marketing_at("2025-01-15T09:00:00Z", "Europe/London"))
}

# Quiet hours are the player's, not the gateway's: 23:00 UTC is 08:00 the
# next day in Tokyo (still quiet) and 18:00 in New York (not quiet).
test_player_local_time if {
	deferred_until(marketing_at("2025-01-15T23:00:00Z", "Asia/Tokyo"), "2025-01-16T00:00:00Z")
	sent_now(marketing_at("2025-01-15T23:00:00Z", "America/New_York"))
}

# A zone half an hour off UTC: 21:30 in Kolkata, until 09:00 there.
test_half_hour_zone if {
	deferred_until(marketing_at("2025-03-01T16:00:00Z", "Asia/Kolkata"), "2025-03-02T03:30:00Z")
}

test_across_new_year if {
	deferred_until(marketing_at("2025-12-31T23:00:00Z", "UTC"), "2026-01-01T09:00:00Z")
}

test_fractional_seconds if {
	deferred_until(marketing_at("2025-01-15T23:00:00.123456789Z", "UTC"), "2025-01-16T09:00:00Z")
}

# Daylight saving time. The end of quiet hours is 09:00 on the player's
# calendar, so on the night the clocks change the deferral is an hour
# shorter or longer than on other nights.

# Europe/London, 30 March 2025: 01:00 GMT becomes 02:00 BST.
test_dst_london_spring_forward if {
	# 22:00 GMT the evening before: 09:00 BST is 08:00 UTC, ten hours later.
	deferred_until(marketing_at("2025-03-29T22:00:00Z", "Europe/London"), "2025-03-30T08:00:00Z")

	# Just before and just after the change.
	deferred_until(marketing_at("2025-03-30T00:30:00Z", "Europe/London"), "2025-03-30T08:00:00Z")
	deferred_until(marketing_at("2025-03-30T01:30:00Z", "Europe/London"), "2025-03-30T08:00:00Z")

	# The first minute of the day after quiet hours, in BST.
	sent_now(marketing_at("2025-03-30T08:00:00Z", "Europe/London"))
}

# Europe/London, 26 October 2025: 02:00 BST becomes 01:00 GMT.
test_dst_london_fall_back if {
	# 23:00 BST the evening before: 09:00 GMT is 09:00 UTC, eleven hours later.
	deferred_until(marketing_at("2025-10-25T22:00:00Z", "Europe/London"), "2025-10-26T09:00:00Z")

	# 01:30 happens twice that night; both end at the same instant.
	deferred_until(marketing_at("2025-10-26T00:30:00Z", "Europe/London"), "2025-10-26T09:00:00Z")
	deferred_until(marketing_at("2025-10-26T01:30:00Z", "Europe/London"), "2025-10-26T09:00:00Z")

	# 08:30 UTC is 08:30 GMT: still quiet, although it would be 09:30 in BST.
	deferred_until(marketing_at("2025-10-26T08:30:00Z", "Europe/London"), "2025-10-26T09:00:00Z")
}

# America/New_York, 9 March 2025: 02:00 EST becomes 03:00 EDT.
test_dst_new_york_spring_forward if {
	# 23:00 EST on 8 March: 09:00 EDT is 13:00 UTC.
	deferred_until(marketing_at("2025-03-09T04:00:00Z", "America/New_York"), "2025-03-09T13:00:00Z")
	deferred_until(marketing_at("2025-03-09T07:30:00Z", "America/New_York"), "2025-03-09T13:00:00Z")
	sent_now(marketing_at("2025-03-09T13:00:00Z", "America/New_York"))
}

# America/New_York, 2 November 2025: 02:00 EDT becomes 01:00 EST.
test_dst_new_york_fall_back if {
	# 23:00 EDT on 1 November: 09:00 EST is 14:00 UTC.
	deferred_until(marketing_at("2025-11-02T03:00:00Z", "America/New_York"), "2025-11-02T14:00:00Z")

	# 01:30 EDT and 01:30 EST.
	deferred_until(marketing_at("2025-11-02T05:30:00Z", "America/New_York"), "2025-11-02T14:00:00Z")
	deferred_until(marketing_at("2025-11-02T06:30:00Z", "America/New_York"), "2025-11-02T14:00:00Z")

	# 13:30 UTC is 08:30 EST: still quiet.
	deferred_until(marketing_at("2025-11-02T13:30:00Z", "America/New_York"), "2025-11-02T14:00:00Z")
}

# A window that ends inside the hour skipped in spring (02:30 does not exist
# in New York on 9 March 2025) ends just after the skip, never inside the
# window.
test_dst_end_in_skipped_hour if {
	qh := {"email": {"start": "21:00", "end": "02:30"}}
	req := marketing_at("2025-03-09T04:00:00Z", "America/New_York")
	deferred_until(req, "2025-03-09T07:30:00Z") with data.blindpost.settings as shipped_with("quiet_hours", qh)
}

# A window that ends inside the hour repeated in autumn ends the first time
# that clock time comes round.
test_dst_end_in_repeated_hour if {
	qh := {"email": {"start": "21:00", "end": "01:30"}}
	req := marketing_at("2025-11-02T02:00:00Z", "America/New_York")
	deferred_until(req, "2025-11-02T05:30:00Z") with data.blindpost.settings as shipped_with("quiet_hours", qh)
}

# A window within one day.
test_daytime_window if {
	qh := {"email": {"start": "12:00", "end": "14:00"}}
	deferred_until(marketing_at("2025-01-15T12:30:00Z", "UTC"), "2025-01-15T14:00:00Z") with data.blindpost.settings as shipped_with("quiet_hours", qh)
	sent_now(marketing_at("2025-01-15T23:00:00Z", "UTC")) with data.blindpost.settings as shipped_with("quiet_hours", qh)
}

test_equal_start_and_end_means_none if {
	qh := {"email": {"start": "09:00", "end": "09:00"}}
	sent_now(marketing_at("2025-01-15T23:00:00Z", "UTC")) with data.blindpost.settings as shipped_with("quiet_hours", qh)
}

test_channel_without_window_not_deferred if {
	sent_now(marketing_at("2025-01-15T23:00:00Z", "UTC")) with data.blindpost.settings as shipped_with("quiet_hours", {"sms": {"start": "21:00", "end": "09:00"}})
}

# Transactional messages are never deferred.
test_transactional_not_deferred if {
	req := json.patch(send_request, [
		{"op": "replace", "path": "/now", "value": "2025-01-15T23:00:00Z"},
		{"op": "replace", "path": "/subject/timezone", "value": "UTC"},
	])
	sent_now(req)
}

# A record without a time zone uses the brand's default.
test_default_timezone if {
	req := json.patch(marketing_at("2025-01-15T21:30:00Z", "UTC"), [{"op": "remove", "path": "/subject/timezone"}])
	deferred_until(req, "2025-01-16T09:00:00Z")

	# The example brand's default is Europe/Malta (UTC+1 in January): 22:30.
	deferred_until(object.union(req, {"tenant": "example", "brand": "example-casino"}), "2025-01-16T08:00:00Z")

	# An empty time zone counts as none.
	deferred_until(json.patch(req, [{"op": "add", "path": "/subject/timezone", "value": ""}]), "2025-01-16T09:00:00Z")
}

# The time zone is in the record, read only at send time.
test_accept_not_deferred if {
	req := object.union(accept_request, {"category": "marketing", "purpose": "promotion", "now": "2025-01-15T23:00:00Z"})
	d := gateway.decision with input as req
	not d.obligations.defer_until
}
