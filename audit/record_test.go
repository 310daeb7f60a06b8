package audit_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/blindpost/blindpost/audit"
)

// The log writes records itself, field by field, rather than through
// encoding/json and a JCS pass; this holds it to RFC 8785 as jcs implements
// it.
func TestRecordEncodingIsRFC8785(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  audit.Record
	}{
		{"minimal", audit.Record{Kind: audit.KindErasure, Tenant: "t"}},
		{"all fields", audit.Record{
			Index: 123456789, Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600)),
			Kind: audit.KindDecision, Tenant: "tenant-a", MsgID: "m-1", ExtID: "gw-1", Pseudonym: "ps_1",
			Data: json.RawMessage(`{ "z": 1.0, "a": [true, null, "é"], "m": {"b": 2, "a": 1e3} }`),
		}},
		{"characters JSON escapes and JCS does not", audit.Record{
			Kind: audit.KindDelivery, Tenant: `<t>&"q"\`, MsgID: "a<b>&c", Pseudonym: "ünï",
			Data: json.RawMessage(`{"s":"a\u2028b\u2029c\u0007"}`),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.rec.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			c, err := jcs.Transform(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, c) {
				t.Fatalf("not canonical:\n got %s\nwant %s", b, c)
			}
			var back audit.Record
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			again, _ := back.Canonical()
			if !bytes.Equal(again, b) {
				t.Fatalf("does not round-trip:\n%s\n%s", b, again)
			}
		})
	}
}

func FuzzRecordEncodingIsRFC8785(f *testing.F) {
	f.Add("tenant-a", "msg-1", `{"a":1}`)
	f.Add(`"\`, "\u2028<>&", `{"b":"\u0001","a":[1e21,0.1]}`)
	f.Fuzz(func(t *testing.T, tenant, id, data string) {
		r := audit.Record{Kind: audit.KindDecision, Tenant: tenant, MsgID: id, Data: json.RawMessage(data)}
		b, err := r.Canonical()
		if err != nil {
			return // invalid ids or data are refused, which is fine
		}
		c, err := jcs.Transform(b)
		if err != nil || !bytes.Equal(b, c) {
			t.Fatalf("not canonical: %q", b)
		}
	})
}

func TestDecisionRecordKeepsTheDecisionLog(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	in := audit.DecisionLog{
		DecisionID: "0b0e6f0c", Path: "blindpost/send/allow", Revision: "sha256:abc",
		Input:     json.RawMessage(`{"subject":{"pseudonym":"ps_1","local_hour":23},"channel":"sms"}`),
		Result:    json.RawMessage(`{"allow":false,"reasons":["quiet_hours"],"obligations":{"defer_until":"2026-03-05T08:00:00Z"}}`),
		Timestamp: g.clock.Now(),
	}
	r, err := audit.NewRecord(audit.KindDecision, "tenant-a", in)
	if err != nil {
		t.Fatal(err)
	}
	r.MsgID, r.Pseudonym = "msg-1", "ps_1"
	if _, err := l.Append(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	l.Close()
	rd, _ := audit.OpenReader(g.dir)
	recs, _ := rd.FindMessage("msg-1")
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	var out audit.DecisionLog
	if err := json.Unmarshal(recs[0].Data, &out); err != nil {
		t.Fatal(err)
	}
	if out.DecisionID != in.DecisionID || !out.Timestamp.Equal(in.Timestamp) || !bytes.Contains(out.Result, []byte("quiet_hours")) {
		t.Fatalf("decision log came back as %+v", out)
	}
}

func TestNewRecordEncodesData(t *testing.T) {
	r, err := audit.NewRecord(audit.KindDelivery, "t", audit.DeliveryData{Status: "bounced", Code: "smtp_550", Attempt: 2})
	if err != nil {
		t.Fatal(err)
	}
	var d audit.DeliveryData
	if err := json.Unmarshal(r.Data, &d); err != nil || d.Code != "smtp_550" {
		t.Fatalf("data %s (%v)", r.Data, err)
	}
}

func TestReaderFindsMessagesAndTimeRanges(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 10) // records i: msg-i, gw-i, one second apart
	l.Close()
	r, err := audit.OpenReader(g.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"msg-4", "gw-4"} {
		recs, err := r.FindMessage(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].Index != 4 {
			t.Fatalf("FindMessage(%s) = %+v", id, recs)
		}
	}
	if recs, _ := r.FindMessage("msg-404"); len(recs) != 0 {
		t.Fatalf("found %d records of an unknown message", len(recs))
	}
	start := newClock().Now() // the first record is one second after
	var got []int64
	for rec, err := range r.Between(start.Add(3*time.Second), start.Add(6*time.Second)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.Index)
	}
	if len(got) != 3 || got[0] != 2 || got[2] != 4 {
		t.Fatalf("Between(3s, 6s) = records %v, want 2, 3, 4", got)
	}
	n := 0
	for range r.Records() {
		n++
	}
	if n != 10 {
		t.Fatalf("Records yielded %d, want 10", n)
	}
}
