package blindpost.gateway_test

import data.blindpost.gateway

in_country(req, country) := json.patch(req, [{"op": "replace", "path": "/subject/country", "value": country}])

# The shipped example brand: DE, GB, MT, US; no marketing SMS to the US.
example_send(req) := object.union(req, {"tenant": "example", "brand": "example-casino"})

test_default_allows_every_country if {
	every country in ["MT", "DE", "BR", "JP"] {
		gateway.decision.allow with input as in_country(send_request, country)
	}
}

test_listed_country_allowed if {
	gateway.decision.allow with input as in_country(example_send(send_request), "GB")
	gateway.decision.allow with input as in_country(example_send(send_request), "gb")
}

test_unlisted_country_denied if {
	gateway.deny == {"country_not_allowed"} with input as in_country(example_send(send_request), "FR")
}

# A record without a country cannot be shown to be in an allowed one.
test_missing_country_denied_when_listed if {
	req := json.patch(example_send(send_request), [{"op": "remove", "path": "/subject/country"}])
	gateway.deny == {"country_not_allowed"} with input as req
}

test_missing_setting_allows_no_country if {
	gateway.deny == {"country_not_allowed"} with input as send_request
		with data.blindpost.settings as shipped_with("allowed_countries", [])
}

test_country_rule_blocks_kind if {
	sms := object.union(example_send(marketing_send), {"channel": "sms"})
	gateway.deny == {"country_restricted"} with input as in_country(sms, "US")
}

# The rule blocks only the kinds it names, only in its country.
test_country_rule_is_narrow if {
	sms := object.union(example_send(marketing_send), {"channel": "sms"})
	gateway.decision.allow with input as in_country(sms, "GB")
	gateway.decision.allow with input as in_country(example_send(marketing_send), "US")
	gateway.decision.allow with input as in_country(object.union(example_send(send_request), {"channel": "sms"}), "US")
}

# The country is in the record, read only at send time.
test_accept_does_not_check_country if {
	gateway.decision.allow with input as example_send(accept_request)
}
