package smpp

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

type receiptCase struct {
	Name            string `json:"name"`
	Text            string `json:"text"`
	Payload         string `json:"payload"`
	EsmClass        *byte  `json:"esm_class"`
	TLVID           string `json:"tlv_id"`
	TLVState        byte   `json:"tlv_state"`
	TLVNetworkError string `json:"tlv_network_error"`
	WantErr         bool   `json:"want_err"`
	Want            struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Code   string `json:"code"`
		Time   string `json:"time"` // RFC 3339, or "now" for the arrival time
	} `json:"want"`
}

func (c receiptCase) message(t *testing.T) shortMessage {
	m := shortMessage{esmClass: esmDeliveryReceipt, message: []byte(c.Text)}
	if c.EsmClass != nil {
		m.esmClass = *c.EsmClass
	}
	if c.Payload != "" {
		m.tlvs = append(m.tlvs, tlv{tag: tagMessagePayload, value: []byte(c.Payload)})
	}
	if c.TLVID != "" {
		m.tlvs = append(m.tlvs, tlv{tag: tagReceiptedMessageID, value: append([]byte(c.TLVID), 0)})
	}
	if c.TLVState != 0 {
		m.tlvs = append(m.tlvs, tlv{tag: tagMessageState, value: []byte{c.TLVState}})
	}
	if c.TLVNetworkError != "" {
		v, err := hex.DecodeString(c.TLVNetworkError)
		if err != nil {
			t.Fatal(err)
		}
		m.tlvs = append(m.tlvs, tlv{tag: tagNetworkErrorCode, value: v})
	}
	return m
}

func TestParseReceipt(t *testing.T) {
	raw, err := os.ReadFile("testdata/receipts.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []receiptCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			m := tc.message(t)
			// Round-trip through the codec, as a deliver_sm arrives.
			body, err := m.appendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			m, err = decodeShortMessage(body)
			if err != nil {
				t.Fatal(err)
			}
			r, err := parseReceipt(&m, time.UTC, now)
			if tc.WantErr {
				if !errors.Is(err, errNoReceiptID) {
					t.Fatalf("err = %v, want errNoReceiptID", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Adapter != "smpp" || r.ProviderID != tc.Want.ID || r.Status != tc.Want.Status || r.Code != tc.Want.Code {
				t.Errorf("receipt = %+v, want id %q status %q code %q", r, tc.Want.ID, tc.Want.Status, tc.Want.Code)
			}
			want := now
			if tc.Want.Time != "now" {
				if want, err = time.Parse(time.RFC3339, tc.Want.Time); err != nil {
					t.Fatal(err)
				}
			}
			if !r.Time.Equal(want) {
				t.Errorf("time = %v, want %v", r.Time, want)
			}
		})
	}
}

func TestReceiptDateUsesConfiguredZone(t *testing.T) {
	loc := time.FixedZone("UTC+3", 3*3600)
	m := shortMessage{esmClass: esmDeliveryReceipt, message: []byte("id:1 done date:2401011500 stat:DELIVRD err:000")}
	r, err := parseReceipt(&m, loc, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC); !r.Time.Equal(want) {
		t.Fatalf("time = %v, want %v", r.Time, want)
	}
}

func TestParseReceiptTextFields(t *testing.T) {
	rt := parseReceiptText("id:42 sub:002 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:a b:c")
	want := receiptText{id: "42", sub: "002", dlvrd: "001", submitDate: "2401011200", doneDate: "2401011201",
		stat: "DELIVRD", err: "000", text: "a b:c"}
	if rt != want {
		t.Fatalf("parsed %+v, want %+v", rt, want)
	}
}
