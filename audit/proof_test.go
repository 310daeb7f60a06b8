package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/envelope"
)

// openBatch seals n messages as the core would and opens them as the
// gateway does.
func openBatch(t *testing.T, n int) (*envelope.Batch, *envelope.SigningKey) {
	t.Helper()
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	core, err := envelope.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := envelope.GenerateRecipientKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	senders := envelope.NewSenderKeyring()
	senders.Pin("tenant-a", core.Public())
	msgs := make([]json.RawMessage, n)
	for i := range msgs {
		msgs[i] = json.RawMessage(fmt.Sprintf(`{"id":"msg-%d","tenant":"tenant-a","brand":"b","channel":"email",
			"category":"transactional","purpose":"password_reset","to":{"subject":"user-%d"},
			"from":"noreply@example.com","subject":"Reset","text":"Hello"}`, i, i))
	}
	env, err := (&envelope.Sealer{Key: core, Recipient: gw.Public(), Now: now}).Seal("tenant-a", msgs)
	if err != nil {
		t.Fatal(err)
	}
	o := &envelope.Opener{
		Keys: envelope.NewRecipientKeyring(gw), Senders: senders,
		Replay: envelope.NewMemoryReplayCache(now), Now: now,
	}
	b, err := o.Open(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	return b, core
}

// An auditor proves offline, from the log alone and the core's public key,
// that the core asked for a message.
func TestMessageProofShowsTheCoreAskedForTheMessage(t *testing.T) {
	b, core := openBatch(t, 5)
	g := newGateway(t)
	l := g.open(t)
	for i := range b.Digests {
		r, err := audit.NewRecord(audit.KindMessageAccepted, "tenant-a", audit.MessageData{Proof: audit.NewMessageProof(b, i)})
		if err != nil {
			t.Fatal(err)
		}
		r.MsgID = fmt.Sprintf("msg-%d", i)
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()

	rd, _ := audit.OpenReader(g.dir)
	recs, err := rd.FindMessage("msg-3")
	if err != nil || len(recs) != 1 {
		t.Fatalf("FindMessage: %v, %d records", err, len(recs))
	}
	var d audit.MessageData
	if err := json.Unmarshal(recs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	if err := d.Proof.Verify(core.Public()); err != nil {
		t.Fatalf("proof from the log: %v", err)
	}
	if d.Proof.Digest != b.Digests[3] {
		t.Fatal("the proof is about another message")
	}

	other, _ := envelope.GenerateSigningKey(nil)
	for _, tc := range []struct {
		name  string
		edit  func(p *audit.MessageProof)
		key   *envelope.VerifyingKey
		valid bool
	}{
		{"another message's digest", func(p *audit.MessageProof) { p.Digest = b.Digests[2] }, core.Public(), false},
		{"another position", func(p *audit.MessageProof) { p.Index = 2 }, core.Public(), false},
		{"an edited header", func(p *audit.MessageProof) { p.Header = append([]byte{}, p.Header...); p.Header[0] ^= 1 }, core.Public(), false},
		{"another key", func(p *audit.MessageProof) {}, other.Public(), false},
		{"another key with the core's id", func(p *audit.MessageProof) { p.KidSender = "" }, other.Public(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := d.Proof
			tc.edit(&p)
			if err := p.Verify(tc.key); !errors.Is(err, audit.ErrBadProof) {
				t.Fatalf("Verify = %v, want ErrBadProof", err)
			}
		})
	}
}
