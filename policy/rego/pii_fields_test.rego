package blindpost.gateway_test

import data.blindpost.gateway

# accept_request (basics_test.rego) with this channel, category and placeholders.
template(channel, category, placeholders) := object.union(accept_request, {
	"channel": channel, "category": category, "placeholders": placeholders,
	"purpose": purpose_for[category],
})

# The rule, independent of the operator's settings.
test_only_listed_fields_allowed if {
	settings := {"transactional": {"email": ["first_name", "email"]}}
	gateway.decision.allow with input as template("email", "transactional", ["email", "first_name"])
		with data.blindpost.settings as shipped_with("pii_fields", settings)
	gateway.deny == {"pii_field_not_allowed"} with input as template("email", "transactional", ["phone"])
		with data.blindpost.settings as shipped_with("pii_fields", settings)
}

# A category or channel the settings do not mention allows no field.
test_missing_settings_allow_nothing if {
	settings := {"transactional": {"email": ["first_name"]}}
	gateway.deny == {"pii_field_not_allowed"} with input as template("sms", "transactional", ["first_name"])
		with data.blindpost.settings as shipped_with("pii_fields", settings)
	gateway.deny == {"pii_field_not_allowed"} with input as template("email", "marketing", ["first_name"])
		with data.blindpost.settings as shipped_with("pii_fields", settings)
	gateway.deny == {"pii_field_not_allowed"} with input as template("email", "transactional", ["first_name"])
		with data.blindpost.settings as shipped_with("pii_fields", {})
}

test_no_placeholders_always_allowed if {
	gateway.decision.allow with input as template("email", "marketing", [])
		with data.blindpost.settings as shipped_with("pii_fields", {})
}

# The shipped settings (data.json): an auditor reads the allow-lists here.
test_shipped_marketing_uses_first_name_only if {
	every channel in ["email", "sms", "im", "push"] {
		gateway.decision.allow with input as template(channel, "marketing", ["first_name"])
		every field in ["email", "phone", "last_name", "locale", "country"] {
			gateway.deny == {"pii_field_not_allowed"} with input as template(channel, "marketing", [field])
		}
	}
}

test_shipped_transactional_email if {
	gateway.decision.allow with input as template("email", "transactional", ["country", "email", "first_name", "last_name", "locale"])
	gateway.deny == {"pii_field_not_allowed"} with input as template("email", "transactional", ["phone"])
}

# Text, instant and push messages pass through third-party providers and
# show on lock screens: they never carry the player's address or number.
test_shipped_transactional_no_address_outside_email if {
	every channel in ["sms", "im", "push"] {
		every field in ["email", "phone"] {
			gateway.deny == {"pii_field_not_allowed"} with input as template(channel, "transactional", [field])
		}
	}
}

# The same check holds at send time.
test_checked_at_send_time if {
	req := object.union(send_request, {"category": "transactional", "placeholders": ["phone"]})
	gateway.deny == {"pii_field_not_allowed"} with input as req
}

test_unknown_field_denied if {
	gateway.deny == {"pii_field_not_allowed"} with input as template("email", "transactional", ["password"])
}
