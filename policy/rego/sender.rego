package blindpost.gateway

# Runs at: both stages.
#
# A brand sends only from its own domains (setting "sender_domains", in
# lower case). The gateway passes the domain of the message's from address
# as input.from_domain, never the whole address.
#
# Why: the core chooses the from address. A compromised or mistaken core
# could otherwise send as another brand of the same operator, or as a
# domain that is not the operator's at all, with the operator's reputation.
#
# The domain must match exactly: listing "example.com" does not allow
# "news.example.com". An empty list allows no from address; a message
# without a from address of its own (input.from_domain absent) goes out
# from the sender the operator configured in the gateway and is not
# checked here.
message_deny contains "sender_not_allowed" if {
	input.from_domain
	not lower(input.from_domain) in object.get(settings, "sender_domains", [])
}
