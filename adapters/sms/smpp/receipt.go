package smpp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
)

// esm_class message types of a deliver_sm (SMPP 3.4 §5.2.12, bits 5-2).
const (
	esmTypeMask         byte = 0x3C
	esmDeliveryReceipt  byte = 0x04
	esmIntermediateNote byte = 0x20
	esmUDHI             byte = 0x40
)

var errNoReceiptID = errors.New("smpp: delivery receipt without a message id")

// receiptText holds the fields of the de-facto standard receipt text (SMPP
// 3.4 Appendix B), "id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm
// done date:YYMMDDhhmm stat:DDDDDDD err:E text:…". Each is empty when the
// SMSC left it out.
type receiptText struct {
	id, sub, dlvrd, submitDate, doneDate, stat, err, text string
}

// parseReceiptText splits s into its fields. Keys are matched without
// regard to case at the start of s or after white space; a value runs to
// the next key.
func parseReceiptText(s string) receiptText {
	// The field names, as SMSCs spell them. text comes last in every known
	// variant and may hold anything, so it ends the scan: a message body
	// cannot forge a stat.
	keys := [...]string{
		"id", "sub", "dlvrd", "submit date", "submit_date", "done date", "done_date",
		"stat", "err", "text",
	}
	type field struct {
		key        string
		start, val int // where the key starts, where its value starts
	}
	var fields []field
	for i := 0; i < len(s); i++ {
		if i > 0 && !isSpace(s[i-1]) {
			continue
		}
		key := ""
		for _, k := range keys {
			if len(s)-i > len(k) && strings.EqualFold(s[i:i+len(k)], k) && s[i+len(k)] == ':' {
				key = k
				break
			}
		}
		if key == "" {
			continue
		}
		fields = append(fields, field{key: key, start: i, val: i + len(key) + 1})
		if key == "text" {
			break
		}
		i += len(key)
	}
	var rt receiptText
	for n, f := range fields {
		end := len(s)
		if n+1 < len(fields) {
			end = fields[n+1].start
		}
		v := strings.TrimSpace(s[f.val:end])
		switch f.key {
		case "id":
			rt.id = v
		case "sub":
			rt.sub = v
		case "dlvrd":
			rt.dlvrd = v
		case "submit date", "submit_date":
			rt.submitDate = v
		case "done date", "done_date":
			rt.doneDate = v
		case "stat":
			rt.stat = v
		case "err":
			rt.err = v
		case "text":
			rt.text = v
		}
	}
	return rt
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

// receiptStat normalises a stat value to the SMPP 3.4 message state names
// (§5.2.28) and reports whether it is one of them. Some SMSCs spell the
// states out in full.
func receiptStat(s string) (string, bool) {
	switch strings.ToUpper(s) {
	case "DELIVRD", "DELIVERED":
		return "DELIVRD", true
	case "UNDELIV", "UNDELIVERABLE", "UNDELIVERED":
		return "UNDELIV", true
	case "EXPIRED":
		return "EXPIRED", true
	case "DELETED":
		return "DELETED", true
	case "REJECTD", "REJECTED":
		return "REJECTD", true
	case "ACCEPTD", "ACCEPTED":
		return "ACCEPTD", true
	case "ENROUTE":
		return "ENROUTE", true
	case "UNKNOWN":
		return "UNKNOWN", true
	}
	return "", false
}

// messageStateName maps the message_state TLV (§5.3.2.35) to its name.
func messageStateName(v byte) (string, bool) {
	switch v {
	case 1:
		return "ENROUTE", true
	case 2:
		return "DELIVRD", true
	case 3:
		return "EXPIRED", true
	case 4:
		return "DELETED", true
	case 5:
		return "UNDELIV", true
	case 6:
		return "ACCEPTD", true
	case 7:
		return "UNKNOWN", true
	case 8:
		return "REJECTD", true
	}
	return "", false
}

// receiptStatus maps a normalised stat to the gateway's vocabulary. A state
// the client does not know is reported as accepted, not final: a later
// receipt or the gateway's own expiry settles it, where a wrong final
// status could not be taken back.
func receiptStatus(stat string) string {
	switch stat {
	case "DELIVRD":
		return sms.StatusDelivered
	case "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN":
		return sms.StatusUndelivered
	}
	return sms.StatusAccepted
}

// safeErr returns an err value fit for a reason code: up to 8 letters or
// digits. Anything else is SMSC free text and is dropped.
func safeErr(s string) string {
	if s == "" || len(s) > 8 {
		return ""
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return ""
		}
	}
	return s
}

// parseReceiptDate reads a receipt's YYMMDDhhmm or YYMMDDhhmmss date.
func parseReceiptDate(s string, loc *time.Location) (time.Time, bool) {
	layout := ""
	switch len(s) {
	case 10:
		layout = "0601021504"
	case 12:
		layout = "060102150405"
	default:
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(layout, s, loc)
	return t, err == nil
}

// parseReceipt turns a deliver_sm whose esm_class marks it as a receipt
// into an sms.Receipt. The receipted_message_id and message_state TLVs win
// over the text: they are the standard's own fields, and the text's id is
// the one some SMSCs render in another base than submit_sm_resp's.
func parseReceipt(m *shortMessage, loc *time.Location, now time.Time) (sms.Receipt, error) {
	text := m.message
	if len(text) == 0 {
		text, _ = m.tlv(tagMessagePayload)
	}
	rt := parseReceiptText(string(text))

	id := rt.id
	if v, ok := m.tlv(tagReceiptedMessageID); ok {
		if s := strings.TrimRight(string(v), "\x00"); s != "" {
			id = s
		}
	}
	if id == "" || len(id) > maxMessageID {
		return sms.Receipt{}, errNoReceiptID
	}

	stat, known := receiptStat(rt.stat)
	if v, ok := m.tlv(tagMessageState); ok && len(v) == 1 {
		if s, ok := messageStateName(v[0]); ok {
			stat, known = s, true
		}
	}
	errCode := safeErr(rt.err)
	if v, ok := m.tlv(tagNetworkErrorCode); ok && len(v) == 3 && errCode == "" {
		errCode = fmt.Sprintf("%03d", int(v[1])<<8|int(v[2]))
	}

	code := "smpp_stat_other"
	if known {
		code = "smpp_stat_" + stat
		if errCode != "" {
			code += "_err_" + errCode
		}
	}
	t, ok := parseReceiptDate(rt.doneDate, loc)
	if !ok {
		t = now
	}
	return sms.Receipt{
		Adapter:    "smpp",
		ProviderID: id,
		Status:     receiptStatus(stat),
		Code:       code,
		Time:       t,
	}, nil
}
