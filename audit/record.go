package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/blindpost/blindpost/internal/jcs"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// The kinds of record.
const (
	KindEnvelopeAccepted = "envelope_accepted"
	KindEnvelopeRejected = "envelope_rejected"
	KindMessageAccepted  = "message_accepted"
	KindMessageRejected  = "message_rejected"
	KindDecision         = "decision"
	KindDelivery         = "delivery"
	KindErasure          = "erasure"
	KindOptOut           = "opt_out"
)

var kinds = map[string]bool{
	KindEnvelopeAccepted: true, KindEnvelopeRejected: true,
	KindMessageAccepted: true, KindMessageRejected: true,
	KindDecision: true, KindDelivery: true, KindErasure: true, KindOptOut: true,
}

// Limits on what a record may carry. Ids are short by nature; a record
// that needs more than MaxDataLen of data is carrying something it should
// not (a rendered message, say).
const (
	MaxIDLen   = 256
	MaxDataLen = 256 << 10
	// maxEntryLen bounds one framed entry, so that a corrupt length
	// prefix is recognised rather than believed.
	maxEntryLen = MaxDataLen + 4<<10
	// maxCheckpointLen bounds one stored checkpoint note.
	maxCheckpointLen = 16 << 10
)

// A Record is one entry of the log. The log sets Index and Time; the
// caller sets the rest, and must never put personal data in any field:
// subjects are named by Pseudonym only.
type Record struct {
	Index     int64           `json:"index"`
	Time      time.Time       `json:"time"`
	Kind      string          `json:"kind"`
	Tenant    string          `json:"tenant"`
	MsgID     string          `json:"msg_id,omitempty"`         // the core's message id
	ExtID     string          `json:"ext_message_id,omitempty"` // the gateway's message id
	Pseudonym string          `json:"pseudonym,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"` // a JSON object, by kind
}

// NewRecord returns a record of kind for tenant whose Data is the JSON
// encoding of data (a json.RawMessage is taken as is).
func NewRecord(kind, tenant string, data any) (Record, error) {
	r := Record{Kind: kind, Tenant: tenant}
	if data != nil {
		b, ok := data.(json.RawMessage)
		if !ok {
			var err error
			if b, err = json.Marshal(data); err != nil {
				return Record{}, fmt.Errorf("%w: data: %v", ErrInvalidRecord, err)
			}
		}
		r.Data = b
	}
	return r, nil
}

// ErrInvalidRecord is returned for a record the log refuses to append.
var ErrInvalidRecord = errors.New("audit: invalid record")

// Canonical returns the bytes the log stores and hashes for r: its RFC 8785
// (JCS) canonical JSON. It is what an inclusion proof proves, so an auditor
// holding a Record read from the log can recompute the leaf.
func (r Record) Canonical() ([]byte, error) {
	p, err := prepare(r)
	if err != nil {
		return nil, err
	}
	return p.appendTo(nil, r.Index, formatTime(r.Time)), nil
}

// prepared is a record encoded, in canonical form, up to the two fields
// the log sets: everything before the index value is b[:cut], everything
// after it, up to the time value, is b[cut:]. Callers' goroutines do this
// work, so the single writer only splices in the index and the time.
type prepared struct {
	b   []byte
	cut int
}

// The members of a record in RFC 8785 order (by UTF-16 code units, which
// for these ASCII names is byte order): data, ext_message_id, index, kind,
// msg_id, pseudonym, tenant, time.
func prepare(r Record) (prepared, error) {
	if !kinds[r.Kind] {
		return prepared{}, fmt.Errorf("%w: unknown kind", ErrInvalidRecord)
	}
	for _, f := range [...]struct{ name, v string }{
		{"tenant", r.Tenant}, {"msg_id", r.MsgID}, {"ext_message_id", r.ExtID}, {"pseudonym", r.Pseudonym},
	} {
		if err := checkID(f.v, f.name == "tenant"); err != "" {
			return prepared{}, fmt.Errorf("%w: %s %s", ErrInvalidRecord, f.name, err)
		}
	}
	b := make([]byte, 0, len(r.Data)+256)
	b = append(b, '{')
	if len(r.Data) > 0 {
		if len(r.Data) > MaxDataLen {
			return prepared{}, fmt.Errorf("%w: data longer than %d bytes", ErrInvalidRecord, MaxDataLen)
		}
		b = append(b, `"data":`...)
		start := len(b)
		var err error
		b, err = jcs.Append(b, r.Data)
		if err != nil || b[start] != '{' {
			return prepared{}, fmt.Errorf("%w: data is not a JSON object", ErrInvalidRecord)
		}
		if len(b)-start > MaxDataLen { // canonical numbers can be longer
			return prepared{}, fmt.Errorf("%w: data longer than %d bytes", ErrInvalidRecord, MaxDataLen)
		}
		b = append(b, ',')
	}
	if r.ExtID != "" {
		b = appendMember(b, "ext_message_id", r.ExtID)
	}
	b = append(b, `"index":`...)
	cut := len(b)
	b = append(b, ',')
	b = appendMember(b, "kind", r.Kind)
	if r.MsgID != "" {
		b = appendMember(b, "msg_id", r.MsgID)
	}
	if r.Pseudonym != "" {
		b = appendMember(b, "pseudonym", r.Pseudonym)
	}
	b = appendMember(b, "tenant", r.Tenant)
	b = append(b, `"time":`...)
	return prepared{b: b, cut: cut}, nil
}

// appendTo appends the complete canonical record to dst.
func (p prepared) appendTo(dst []byte, index int64, time string) []byte {
	dst = append(dst, p.b[:p.cut]...)
	dst = strconv.AppendInt(dst, index, 10)
	dst = append(dst, p.b[p.cut:]...)
	dst = jcs.AppendString(dst, time)
	return append(dst, '}')
}

// size is an upper bound of the length appendTo adds.
func (p prepared) size() int { return len(p.b) + 20 + 40 }

func appendMember(b []byte, name, v string) []byte {
	b = jcs.AppendString(b, name)
	b = append(b, ':')
	b = jcs.AppendString(b, v)
	return append(b, ',')
}

// formatTime is the one text form of a record's time: UTC, RFC 3339 with
// as many fractional digits as needed, which parses back to the same
// instant and formats again to the same bytes.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// checkID returns why s is not a valid id, or "". Ids are printable UTF-8:
// they are names and codes, not free text.
func checkID(s string, required bool) string {
	switch {
	case s == "":
		if required {
			return "required"
		}
		return ""
	case len(s) > MaxIDLen:
		return "longer than " + strconv.Itoa(MaxIDLen) + " bytes"
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return "has a non-printable character"
		}
	}
	return ""
}

// parseEntry decodes one stored entry. Unless strict is false it also
// requires the bytes to be exactly the canonical form of the record they
// decode to, so that no two byte strings stand for the same record.
func parseEntry(b []byte, strict bool) (Record, error) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, errors.New("not a valid record")
	}
	if !strict {
		return r, nil
	}
	c, err := r.Canonical()
	if err != nil {
		return Record{}, errors.New("not a valid record")
	}
	if !bytes.Equal(c, b) {
		return Record{}, errors.New("not in canonical form")
	}
	return r, nil
}
