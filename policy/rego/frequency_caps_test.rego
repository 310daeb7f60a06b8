package blindpost.gateway_test

import data.blindpost.gateway

# A marketing email at accept time, with this many already reserved for the
# recipient in the window. Shipped cap: 3 marketing emails per 7 days.
marketing_email_after(n) := object.union(accept_request, {
	"category": "marketing", "purpose": "promotion",
	"counters": {"marketing/email": n},
})

week := 604800

test_below_cap_allowed_with_reservation if {
	every n in [0, 1, 2] {
		d := gateway.decision with input as marketing_email_after(n)
		d.allow == true
		d.obligations == {"reserve": [{"key": "marketing/email", "window_seconds": week, "limit": 3}]}
	}
}

test_at_cap_denied if {
	gateway.deny == {"frequency_cap"} with input as marketing_email_after(3)
	gateway.deny == {"frequency_cap"} with input as marketing_email_after(10)
}

# A missing counter counts as 0; the gateway's atomic reservation enforces
# the cap in any case.
test_missing_counter_counts_zero if {
	d := gateway.decision with input as object.remove(marketing_email_after(0), ["counters"])
	d.obligations.reserve == [{"key": "marketing/email", "window_seconds": week, "limit": 3}]
}

# Counters are per kind: SMS sent does not use up the email cap.
test_caps_per_kind if {
	req := object.union(marketing_email_after(0), {"counters": {"marketing/sms": 5}})
	gateway.decision.allow with input as req
	gateway.deny == {"frequency_cap"} with input as object.union(req, {"channel": "sms"})
}

# Transactional messages have no shipped cap: no reservation.
test_transactional_not_capped if {
	d := gateway.decision with input as object.union(accept_request, {"counters": {"transactional/email": 1000}})
	d.allow == true
	d.obligations == {}
}

# An operator can cap any kind.
test_operator_cap_on_transactional if {
	caps := {"transactional/sms": {"limit": 10, "window_seconds": 86400}}
	req := object.union(accept_request, {"channel": "sms", "counters": {"transactional/sms": 10}})
	gateway.deny == {"frequency_cap"} with input as req
		with data.blindpost.settings as shipped_with("frequency_caps", caps)
}

# Reserved at accept time, so not checked again at send time (the counter
# then includes the message itself).
test_not_checked_at_send_time if {
	req := object.union(marketing_send, {"counters": {"marketing/email": 3}})
	d := gateway.decision with input as req
	d.allow == true
	not d.obligations.reserve
}

# A denied message reserves nothing.
test_denied_reserves_nothing if {
	d := gateway.decision with input as object.union(marketing_email_after(0), {"placeholders": ["email"]})
	d.allow == false
	d.obligations == {}
}

# The kind of a message, the key of caps and counters.
test_message_kind if {
	gateway.message_kind == "marketing/sms" with input as object.union(accept_request, {"category": "marketing", "channel": "sms"})
}
