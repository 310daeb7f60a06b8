// Package sms holds the types every SMS adapter shares: the message handed to
// a provider, the provider's answer, and the delivery receipts that come back
// later. The adapters live in its subpackages (twilio, httpsms, smpp).
//
// A Message holds a phone number and a rendered body: personal data. Nothing
// here logs it or puts it in an error.
package sms

import (
	"context"
	"time"
)

// Message is one SMS as the gateway hands it to an adapter.
type Message struct {
	// From is the sender: an E.164 number or an alphanumeric sender id
	// (at most 11 characters). Empty means the adapter's configured default.
	From string
	// To is the recipient's number in E.164 form, e.g. "+15550100001".
	To string
	// Body is the rendered text. Adapters that split long messages do so
	// themselves (SMPP: UDH concatenation; HTTP providers split on their side).
	Body string
	// Ref is the gateway's opaque reference for the message (its
	// ext_message_id, PII-free). Adapters pass it to the provider where the
	// provider echoes it back in receipts, so a receipt can be matched even
	// without the provider's id.
	Ref string
}

// Result is the provider's acceptance of a Message.
type Result struct {
	// ProviderID is the provider's id for the message (Twilio's MessageSid,
	// the SMSC's message_id). With several parts it is the first part's;
	// PartIDs holds them all.
	ProviderID string
	PartIDs    []string
	// Parts is how many SMS segments the message took.
	Parts int
}

// Receipt statuses, the gateway's vocabulary (docs/protocol.md §18).
const (
	// StatusDelivered: the handset has it.
	StatusDelivered = "delivered"
	// StatusUndelivered: the network gave up (expired, rejected,
	// undeliverable); final.
	StatusUndelivered = "undelivered"
	// StatusAccepted: an intermediate state (queued, sent, accepted by the
	// network); not final.
	StatusAccepted = "accepted"
)

// Receipt is a delivery report from a provider about an earlier Result.
type Receipt struct {
	// Adapter names the adapter that received it ("twilio", "http", "smpp").
	Adapter string
	// ProviderID matches Result.ProviderID (or one of its PartIDs).
	ProviderID string
	// Ref is the gateway's reference, when the provider echoes it.
	Ref string
	// Status is one of StatusDelivered, StatusUndelivered, StatusAccepted.
	Status string
	// Code is the provider's PII-free reason, e.g. "twilio_30003",
	// "smpp_stat_UNDELIV_err_001".
	Code string
	// Time is when the provider says the status changed, or when it arrived.
	Time time.Time
}

// ReceiptSink takes receipts from an adapter. An adapter acknowledges a
// receipt to the provider only after the sink returned nil, so a receipt
// is never lost on a crash; the sink must therefore tolerate duplicates.
type ReceiptSink func(context.Context, Receipt) error
