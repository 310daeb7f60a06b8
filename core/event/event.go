// Package event defines the player event as the reference vendor's events
// API carries it (DESIGN.md §1), the per-event error codes of that API,
// and the outcome of ingesting one event. Every ingestion route (the events
// API, Kafka, RabbitMQ, SQL views) produces these, and the PII firewall,
// the store and the pipeline consume them.
//
// Events are vendor-side data: they name players only by the operator's
// pseudonymous ids (ext_brand_id, user_ext_id) and by opaque tokens. The
// PII firewall (core/firewall) enforces that before anything is stored.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Event is one player event.
type Event struct {
	EID       string `json:"eid"`        // unique per label; the de-duplication key
	EventDate int64  `json:"event_date"` // epoch milliseconds
	Brand     string `json:"ext_brand_id"`
	User      string `json:"user_ext_id"`
	Type      string `json:"event_type"`
	// Payload is the event's properties, a JSON object. For update_profile
	// its keys may carry the array operators +, -, ^ and !.
	Payload map[string]any `json:"payload,omitempty"`
	// SkipCJM updates the player's state without triggering automation.
	SkipCJM bool `json:"skip_cjm,omitempty"`
}

// The common event types; a label may register custom ones.
const (
	TypeRegistration  = "registration"
	TypeLogin         = "login"
	TypeDeposit       = "deposit"
	TypeWithdrawal    = "withdrawal"
	TypeBet           = "bet"
	TypeWin           = "win"
	TypeUpdateProfile = "update_profile"
	TypeClientAction  = "client_action"
)

// Common lists the built-in event types.
var Common = []string{TypeRegistration, TypeLogin, TypeDeposit, TypeWithdrawal, TypeBet, TypeWin, TypeUpdateProfile, TypeClientAction}

// Error codes of the reference vendor's events API.
const (
	CodeWrongAPIKey   = 10000 // the Authorization header names no valid key
	CodeUserNotFound  = 10001
	CodeBrandNotFound = 125
	CodeDuplicateEID  = 20056 // seen before: safe on retry, nothing was changed
	CodeInvalid       = 10002 // blindpost: malformed event (missing field, bad type)
	CodePII           = 10003 // blindpost: the PII firewall refused a value
	CodeUnknownType   = 10004 // blindpost: an event type the label has not registered
)

// Error is one per-event error, as the events API returns it.
type Error struct {
	Code    int    `json:"error_code"`
	Message string `json:"error_message"`
}

// MaxIDLen bounds eid, ext_brand_id, user_ext_id and event_type.
const MaxIDLen = 128

var (
	// ErrInvalid marks a malformed event.
	ErrInvalid = errors.New("event: invalid")
	typeRE     = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// Decode parses one event strictly: unknown top-level fields are errors,
// so a misspelt field never silently drops data. The error names the
// field, never its value (a value may be PII the firewall has not seen).
func Decode(raw []byte) (Event, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return Event{}, fmt.Errorf("%w: field %s has the wrong type", ErrInvalid, ute.Field)
		}
		return Event{}, fmt.Errorf("%w: not a JSON event object", ErrInvalid)
	}
	if dec.More() {
		return Event{}, fmt.Errorf("%w: trailing data after the event", ErrInvalid)
	}
	return ev, ev.Validate()
}

// Validate checks the required fields. Errors name the field only.
func (e Event) Validate() error {
	for _, f := range [...]struct{ name, v string }{
		{"eid", e.EID}, {"ext_brand_id", e.Brand}, {"user_ext_id", e.User}, {"event_type", e.Type},
	} {
		if f.v == "" {
			return fmt.Errorf("%w: %s is required", ErrInvalid, f.name)
		}
		if len(f.v) > MaxIDLen {
			return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalid, f.name, MaxIDLen)
		}
		// PostgreSQL stores neither; a store refusing one event would
		// otherwise refuse its whole batch, and a connector retry it
		// for ever.
		if !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return fmt.Errorf("%w: %s is not valid UTF-8 text", ErrInvalid, f.name)
		}
	}
	if !typeRE.MatchString(e.Type) {
		return fmt.Errorf("%w: event_type must be lower-case letters, digits and _", ErrInvalid)
	}
	if e.EventDate <= 0 {
		return fmt.Errorf("%w: event_date must be epoch milliseconds", ErrInvalid)
	}
	return nil
}

// Rejection is what is kept of an event the firewall refused: its id, the
// reason, and the JSON path of the offending value, never the value.
type Rejection struct {
	EID    string `json:"eid"`
	Reason string `json:"reason"` // e.g. "email", "phone", "card", "iban", "pii_property"
	Path   string `json:"path"`   // e.g. "payload.contact.email"
}
