package blindpost.gateway_test

import data.blindpost.gateway

# The shipped example brand may send from example.com and news.example.com.
example_brand(req) := object.union(req, {"tenant": "example", "brand": "example-casino"})

from(req, domain) := object.union(req, {"from_domain": domain})

test_listed_domain_allowed if {
	gateway.decision.allow with input as from(example_brand(accept_request), "example.com")
	gateway.decision.allow with input as from(example_brand(accept_request), "news.example.com")
}

test_domains_compared_case_insensitively if {
	gateway.decision.allow with input as from(example_brand(accept_request), "News.Example.COM")
}

test_other_domain_denied if {
	gateway.deny == {"sender_not_allowed"} with input as from(example_brand(accept_request), "example.org")
}

# Exact match only: a listed domain does not cover its subdomains.
test_subdomain_not_covered if {
	gateway.deny == {"sender_not_allowed"} with input as from(example_brand(accept_request), "promo.example.com")
}

# A brand may not send as another brand of the same operator.
test_other_brand_list_does_not_apply if {
	req := object.union(from(example_brand(accept_request), "example.com"), {"brand": "other-brand"})
	gateway.deny == {"sender_not_allowed"} with input as req
}

# The shipped default list is empty: no from address until the operator
# names its domains.
test_default_list_allows_nothing if {
	gateway.deny == {"sender_not_allowed"} with input as from(accept_request, "example.com")
}

# A message without its own from address uses the gateway's configured one.
test_no_from_domain_not_checked if {
	gateway.decision.allow with input as accept_request
}

test_checked_at_send_time if {
	gateway.deny == {"sender_not_allowed"} with input as from(example_brand(send_request), "example.org")
}
