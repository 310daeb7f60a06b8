package blindpost.gateway_test

import data.blindpost.gateway

# Settings for the tests below, not the shipped ones: defaults, a tenant
# that overrides some, and a brand of that tenant that overrides some again.
default_settings := {
	"purposes": {"transactional": ["default_purpose"], "marketing": ["promotion"]},
	"quiet_hours": {"email": {"start": "21:00", "end": "09:00"}, "sms": {"start": "21:00", "end": "09:00"}},
	"default_timezone": "UTC",
}

tenant_settings := {"t1": {
	"settings": {"purposes": {"transactional": ["tenant_purpose"]}, "default_timezone": "Europe/Malta"},
	"brands": {"b1": {"settings": {
		"purposes": {"transactional": ["brand_purpose"]},
		"quiet_hours": {"sms": {"start": "20:00", "end": "10:00"}},
	}}},
}}

settings_for(tenant, brand) := s if {
	s := gateway.settings with input as {"tenant": tenant, "brand": brand}
		with data.blindpost.settings as default_settings
		with data.blindpost.tenants as tenant_settings
}

test_brand_setting_wins if {
	settings_for("t1", "b1").purposes.transactional == ["brand_purpose"]
}

test_tenant_setting_for_other_brands if {
	settings_for("t1", "b2").purposes.transactional == ["tenant_purpose"]
	settings_for("t1", "b1").default_timezone == "Europe/Malta"
}

test_default_for_other_tenants if {
	settings_for("t2", "b1") == default_settings
}

# Objects merge key by key: the brand changed transactional purposes and SMS
# quiet hours only; marketing purposes and email quiet hours come from the
# defaults.
test_objects_merge_key_by_key if {
	s := settings_for("t1", "b1")
	s.purposes.marketing == ["promotion"]
	s.quiet_hours == {"email": {"start": "21:00", "end": "09:00"}, "sms": {"start": "20:00", "end": "10:00"}}
}

# Lists replace: the brand's list is its whole list.
test_lists_replace if {
	s := settings_for("t1", "b1")
	not "default_purpose" in s.purposes.transactional
	not "tenant_purpose" in s.purposes.transactional
}

# The shipped example tenant shows the layering at work.
test_shipped_example_tenant if {
	gateway.settings.default_timezone == "Europe/Malta" with input as {"tenant": "example", "brand": "example-casino"}
	gateway.settings.default_timezone == "UTC" with input as {"tenant": "example", "brand": "other"}
	gateway.settings.volume_guard.max_per_minute == 600 with input as {"tenant": "example", "brand": "other"}
	gateway.settings.volume_guard.max_per_minute == 6000 with input as {"tenant": "other", "brand": "other"}
}
