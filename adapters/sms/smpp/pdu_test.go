package smpp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"regexp"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters/sms"
)

func TestBindTransceiverBytes(t *testing.T) {
	body, err := bindBody{systemID: "blindpost", password: "secret", systemType: "bp"}.appendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	got := hex.EncodeToString(appendPDU(nil, cmdBindTransceiver, 0, 1, body))
	// 16-octet header, then system_id, password, system_type, 0x34, TON, NPI, address_range.
	want := "00000028" + "00000009" + "00000000" + "00000001" +
		hex.EncodeToString([]byte("blindpost\x00secret\x00bp\x00")) + "34" + "00" + "00" + "00"
	if got != want {
		t.Fatalf("bind_transceiver\n got %s\nwant %s", got, want)
	}
}

func TestBindBodyRejectsOverlongFields(t *testing.T) {
	for name, b := range map[string]bindBody{
		"system_id":   {systemID: "0123456789abcdef"},
		"password":    {password: "123456789"},
		"system_type": {systemType: "0123456789abc"},
		"NUL":         {systemID: "a\x00b"},
	} {
		if _, err := b.appendTo(nil); !errors.Is(err, errFieldValue) {
			t.Errorf("%s: err = %v, want errFieldValue", name, err)
		}
	}
}

func TestShortMessageRoundTrip(t *testing.T) {
	m := shortMessage{
		serviceType: "CMT", srcTON: 5, src: "blindpost", dstTON: 1, dstNPI: 1, dst: "15550100001",
		esmClass: esmUDHI, registeredDelivery: 1, dataCoding: codingUCS2,
		message: append(udh(7, 2, 1), encodeUCS2("Привет")...),
		tlvs:    []tlv{{tag: tagReceiptedMessageID, value: []byte("ab\x00")}},
	}
	body, err := m.appendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeShortMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	again, err := got.appendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, again) || got.dst != m.dst || got.src != m.src || !bytes.Equal(got.message, m.message) {
		t.Fatalf("round trip changed the message: %+v", got)
	}
	if v, ok := got.tlv(tagReceiptedMessageID); !ok || string(v) != "ab\x00" {
		t.Fatalf("tlv = %q, %v", v, ok)
	}
}

func TestReadPDU(t *testing.T) {
	frame := appendPDU(nil, cmdSubmitSMResp, 0, 9, []byte("5a000001\x00"))
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"one frame", frame, nil},
		{"header only", appendPDU(nil, cmdEnquireLink, 0, 3, nil), nil},
		{"length below the header", []byte{0, 0, 0, 8, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1}, errPDULength},
		{"length beyond the limit", []byte{0, 0x10, 0, 0, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1}, errPDULength},
		{"truncated body", frame[:len(frame)-2], io.ErrUnexpectedEOF},
		{"truncated header", frame[:10], io.ErrUnexpectedEOF},
		{"nothing", nil, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := readPDU(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(p.encode(), tc.in) {
				t.Fatalf("re-encoded %x, read %x", p.encode(), tc.in)
			}
		})
	}
}

func TestDecodeMessageIDResp(t *testing.T) {
	if id, err := decodeMessageIDResp([]byte("5a000001\x00")); err != nil || id != "5a000001" {
		t.Fatalf("id %q, err %v", id, err)
	}
	if id, err := decodeMessageIDResp(nil); err != nil || id != "" {
		t.Fatalf("empty body: id %q, err %v", id, err)
	}
	if _, err := decodeMessageIDResp([]byte("unterminated")); !errors.Is(err, errCString) {
		t.Fatalf("unterminated: err %v", err)
	}
	if _, err := decodeMessageIDResp(append(bytes.Repeat([]byte("a"), 65), 0)); !errors.Is(err, errCString) {
		t.Fatalf("overlong: err %v", err)
	}
}

var receiptCode = regexp.MustCompile(`^smpp_stat_(other|[A-Z]{7}(_err_[0-9A-Za-z]{1,8})?)$`)

// FuzzDecodePDU holds the decoder to three properties on any input: it
// does not panic, what it accepts re-encodes to the same octets, and a
// receipt built from it has a well-formed, PII-free code.
func FuzzDecodePDU(f *testing.F) {
	f.Add(appendPDU(nil, cmdEnquireLink, 0, 1, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodePDU(data)
		if err != nil {
			return
		}
		if !bytes.Equal(p.encode(), data) {
			t.Fatalf("re-encoded frame differs")
		}
		if q, err := readPDU(bytes.NewReader(data)); err != nil || q.id != p.id || q.seq != p.seq || !bytes.Equal(q.body, p.body) {
			t.Fatalf("readPDU disagrees with decodePDU: %v", err)
		}
		switch p.id {
		case cmdSubmitSM, cmdDeliverSM:
			m, err := decodeShortMessage(p.body)
			if err != nil {
				return
			}
			again, err := m.appendTo(nil)
			if err != nil {
				t.Fatalf("decoded message does not encode: %v", err)
			}
			if !bytes.Equal(again, p.body) {
				t.Fatalf("re-encoded body differs")
			}
			r, err := parseReceipt(&m, time.UTC, time.Unix(0, 0))
			if err != nil {
				return
			}
			if r.ProviderID == "" || !receiptCode.MatchString(r.Code) {
				t.Fatalf("receipt id %q code %q", r.ProviderID, r.Code)
			}
			switch r.Status {
			case sms.StatusDelivered, sms.StatusUndelivered, sms.StatusAccepted:
			default:
				t.Fatalf("status %q", r.Status)
			}
		case cmdBindTransceiverResp:
			decodeBindResp(p.body)
		case cmdSubmitSMResp, cmdDeliverSMResp:
			decodeMessageIDResp(p.body)
		}
	})
}
