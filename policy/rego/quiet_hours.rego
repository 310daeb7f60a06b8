package blindpost.gateway

# Runs at: send (the time zone comes from the player's record).
#
# Marketing does not reach players at night. Each channel may have a quiet
# window in the player's local time (setting "quiet_hours", e.g. "sms":
# {"start": "21:00", "end": "09:00"}); a channel without one has no quiet
# hours. During the window a marketing message is not denied but deferred:
# the decision allows it with the obligation "defer_until", the instant the
# window ends (RFC 3339, UTC), and the gateway keeps the message until then
# and asks again. Transactional messages are never deferred: a password
# reset at 3 a.m. is one the player asked for.
#
# Local time is the player's time zone (input.subject.timezone, an IANA name
# such as "Europe/London"), or the brand's "default_timezone" if the record
# names none, at the gateway's clock (input.now). The end of the window is
# worked out on the player's calendar, not by adding hours, so it is right
# on the nights the clocks change: quiet hours that end at 09:00 end at
# 09:00 local time on the morning after a daylight-saving change too.
#
# The window includes its start and excludes its end: 21:00-09:00 is quiet
# from 21:00:00 to 08:59:59. A start equal to its end means no quiet hours.
obligations["defer_until"] := quiet_hours_end if {
	input.stage == "send"
	input.category == "marketing"
	count(deny) == 0
	window := settings.quiet_hours[input.channel]
	in_window(local_time, window.start, window.end)
}

# Times of day are written "HH:MM", on the 24-hour clock with two digits
# each ("09:00", not "9:00"), so that comparing them as text compares them
# as times. (settings_check.rego refuses settings written otherwise.)

# The player's local time now.
local_time := time.format([time.parse_rfc3339_ns(input.now), player_timezone, "15:04"])

player_timezone := tz if {
	tz := input.subject.timezone
	tz != ""
} else := settings.default_timezone

# A window within one day, e.g. 12:00-14:00.
in_window(t, start, end) if {
	start < end
	t >= start
	t < end
}

# A window across midnight, e.g. 21:00-09:00: quiet if the time is at or
# after the start (the evening), or before the end (the morning).
in_window(t, start, end) if {
	start > end
	true in {t >= start, t < end}
}

# When the window ends, as an instant.
#
# The arithmetic uses the player's "wall clock": the local date and time,
# written as if it were UTC. Adding a day to a wall clock moves to the same
# time on the next calendar day, whatever the clocks do in between.
quiet_hours_end := time.format([end_instant, "UTC", "2006-01-02T15:04:05Z07:00"])

# The window ends today if its end is still to come today, else tomorrow.
end_wall := local_midnight + end_of_window if {
	local_time < settings.quiet_hours[input.channel].end
} else := (local_midnight + ns_per_day) + end_of_window

# The end of the window, in nanoseconds after midnight.
end_of_window := ((to_number(hh_mm[0]) * 60) + to_number(hh_mm[1])) * ns_per_minute if {
	hh_mm := split(settings.quiet_hours[input.channel].end, ":")
}

local_midnight := wall_now - (wall_now % ns_per_day)

wall_now := wall_clock(now_ns)

# From wall clock back to an instant: subtract the zone's offset from UTC.
# The offset in force now is right unless the clocks change before the
# window ends; then the offset in force at the first guess is. If neither
# gives back the wall clock asked for, the end falls in the hour skipped
# when clocks go forward, and the window ends just after the skip.
end_instant := first_guess if {
	offset_at(first_guess) == offset_at(now_ns)
} else := second_guess if {
	offset_at(second_guess) == offset_at(first_guess)
} else := max([first_guess, second_guess])

first_guess := end_wall - offset_at(now_ns)

second_guess := end_wall - offset_at(first_guess)

wall_clock_layout := "2006-01-02T15:04:05.999999999"

# wall_clock(t): the player's local date and time at instant t, read as UTC.
wall_clock(t) := time.parse_ns(wall_clock_layout, time.format([t, player_timezone, wall_clock_layout]))

# offset_at(t): how far the player's clock is ahead of UTC at instant t.
offset_at(t) := wall_clock(t) - t
