package envelope_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/envelope"
)

const tenant = "tenant-a"

// fixture is a core and a gateway that trust each other for tenant, with a
// clock the test moves.
type fixture struct {
	now    time.Time
	core   *envelope.SigningKey
	gw     *envelope.RecipientKey
	sealer *envelope.Sealer
	opener *envelope.Opener
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	clock := func() time.Time { return f.now }
	f.core = mustSigningKey(t)
	f.gw = mustRecipientKey(t)
	senders := envelope.NewSenderKeyring()
	senders.Pin(tenant, f.core.Public())
	f.sealer = &envelope.Sealer{Key: f.core, Recipient: f.gw.Public(), Now: clock}
	f.opener = &envelope.Opener{
		Keys:    envelope.NewRecipientKeyring(f.gw),
		Senders: senders,
		Replay:  envelope.NewMemoryReplayCache(clock),
		Now:     clock,
	}
	return f
}

func mustSigningKey(t testing.TB) *envelope.SigningKey {
	t.Helper()
	k, err := envelope.GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustRecipientKey(t testing.TB) *envelope.RecipientKey {
	t.Helper()
	k, err := envelope.GenerateRecipientKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// message returns a valid message request of tenant t.
func message(t, id string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{
		"id": %q, "tenant": %q, "brand": "brand-1", "channel": "email",
		"category": "transactional", "purpose": "password_reset",
		"to": {"token": "tok_email_v1_abcdefghijklmnopqrstuvwxyz234567"},
		"from": "noreply@example.com", "subject": "Reset your password",
		"html": "<p>Hello {{pii.first_name}} \u00e9</p>", "text": "Hello {{pii.first_name}}"
	}`, id, t))
}

func messages(n int) []json.RawMessage {
	ms := make([]json.RawMessage, n)
	for i := range ms {
		ms[i] = message(tenant, fmt.Sprintf("msg-%d", i))
	}
	return ms
}

func (f *fixture) seal(t testing.TB, msgs []json.RawMessage) *envelope.Envelope {
	t.Helper()
	env, err := f.sealer.Seal(tenant, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// wire sends env through JSON and Decode, as the gateway receives it.
func wire(t testing.TB, env *envelope.Envelope) *envelope.Envelope {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got, err := envelope.Decode(bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestSealedBatchOpensWithSameMessages(t *testing.T) {
	for _, n := range []int{1, 100} {
		t.Run(fmt.Sprintf("batch=%d", n), func(t *testing.T) {
			f := newFixture(t)
			msgs := messages(n)
			b, err := f.opener.Open(context.Background(), wire(t, f.seal(t, msgs)))
			if err != nil {
				t.Fatal(err)
			}
			if b.Tenant != tenant || b.KidSender != f.core.ID || len(b.Messages) != n || len(b.Digests) != n {
				t.Fatalf("batch: tenant %q kid %q, %d messages, %d digests", b.Tenant, b.KidSender, len(b.Messages), len(b.Digests))
			}
			if !envelope.VerifyBatchSignature(f.core.Public(), b.Header, b.Root, b.InnerSig) {
				t.Error("inner signature does not verify on its own")
			}
			if got := envelope.MerkleRoot(b.Digests); got != b.Root {
				t.Error("root is not the tree hash of the digests")
			}
			for i := range msgs {
				m, err := envelope.ParseMessage(b.Messages[i])
				if err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("msg-%d", i); m.ID != want {
					t.Fatalf("message %d has id %q, want %q", i, m.ID, want)
				}
				if d, _ := envelope.Digest(msgs[i]); d != b.Digests[i] {
					t.Errorf("digest %d differs from the digest of the message sent", i)
				}
				if !envelope.VerifyInclusion(b.Root, n, i, b.Digests[i], b.InclusionProof(i)) {
					t.Errorf("message %d: inclusion proof does not verify", i)
				}
			}
		})
	}
}

// TestOpenRejects: every way an envelope can be wrong gives its own
// sentinel error, and none of them opens.
func TestOpenRejects(t *testing.T) {
	other := mustSigningKey(t)
	otherGW := mustRecipientKey(t)
	flip := func(b []byte) { b[len(b)/2] ^= 1 }
	tests := []struct {
		name  string
		setup func(f *fixture) // before sealing
		edit  func(f *fixture, e *envelope.Envelope)
		want  error
	}{
		{name: "forged signature", edit: func(f *fixture, e *envelope.Envelope) { flip(e.Sig) }, want: envelope.ErrBadSignature},
		{name: "signature by an unpinned key under a pinned kid", setup: func(f *fixture) {
			f.sealer.Key = &envelope.SigningKey{ID: f.core.ID, Private: other.Private}
		}, want: envelope.ErrBadSignature},
		{name: "tampered ciphertext", edit: func(f *fixture, e *envelope.Envelope) { flip(e.CT) }, want: envelope.ErrBadSignature},
		{name: "truncated ciphertext", edit: func(f *fixture, e *envelope.Envelope) { e.CT = e.CT[:len(e.CT)-1] }, want: envelope.ErrBadSignature},
		{name: "tampered encapsulated key", edit: func(f *fixture, e *envelope.Envelope) { flip(e.Enc) }, want: envelope.ErrBadSignature},
		{name: "tampered header: tenant", setup: func(f *fixture) {
			f.opener.Senders.Pin("tenant-b", f.core.Public())
		}, edit: func(f *fixture, e *envelope.Envelope) { e.Tenant = "tenant-b" }, want: envelope.ErrBadSignature},
		{name: "tampered header: kid_sender", setup: func(f *fixture) {
			f.opener.Senders.Pin(tenant, other.Public())
		}, edit: func(f *fixture, e *envelope.Envelope) { e.KidSender = other.ID }, want: envelope.ErrBadSignature},
		{name: "tampered header: kid_recipient", setup: func(f *fixture) {
			f.opener.Keys = envelope.NewRecipientKeyring(f.gw, otherGW)
		}, edit: func(f *fixture, e *envelope.Envelope) { e.KidRecipient = otherGW.ID }, want: envelope.ErrBadSignature},
		{name: "tampered header: ts", edit: func(f *fixture, e *envelope.Envelope) { e.TS++ }, want: envelope.ErrBadSignature},
		{name: "tampered header: nonce", edit: func(f *fixture, e *envelope.Envelope) { flip(e.Nonce) }, want: envelope.ErrBadSignature},
		{name: "tampered header: v", edit: func(f *fixture, e *envelope.Envelope) { e.V = 2 }, want: envelope.ErrVersion},
		{name: "stale timestamp", setup: func(f *fixture) {
			f.now = f.now.Add(envelope.DefaultWindow + time.Second)
		}, want: envelope.ErrStale},
		{name: "future timestamp", setup: func(f *fixture) {
			f.now = f.now.Add(-envelope.DefaultWindow - time.Second)
		}, want: envelope.ErrStale},
		{name: "unknown kid_sender", setup: func(f *fixture) { f.sealer.Key = other }, want: envelope.ErrUnknownKey},
		{name: "unknown kid_recipient", setup: func(f *fixture) { f.sealer.Recipient = otherGW.Public() }, want: envelope.ErrUnknownKey},
		{name: "sender key pinned for another tenant", setup: func(f *fixture) {
			f.opener.Senders = envelope.NewSenderKeyring()
			f.opener.Senders.Pin("tenant-b", f.core.Public())
		}, want: envelope.ErrUnknownKey},
		{name: "short nonce", edit: func(f *fixture, e *envelope.Envelope) { e.Nonce = e.Nonce[:8] }, want: envelope.ErrMalformed},
		{name: "malformed kid", edit: func(f *fixture, e *envelope.Envelope) { e.KidSender = "ABCDEF0123456789" }, want: envelope.ErrMalformed},
		{name: "empty tenant", edit: func(f *fixture, e *envelope.Envelope) { e.Tenant = "" }, want: envelope.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			sealTime := f.now
			if tt.setup != nil {
				tt.setup(f)
			}
			// Seal at the fixture's original time; the setup may have moved the gateway's clock.
			now := f.now
			f.now = sealTime
			env := f.seal(t, messages(2))
			f.now = now
			if tt.edit != nil {
				tt.edit(f, env)
			}
			b, err := f.opener.Open(context.Background(), env)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			if b != nil {
				t.Fatal("Open returned a batch along with an error")
			}
		})
	}
}

func TestReplayedNonceIsRejected(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, messages(1))
	if _, err := f.opener.Open(context.Background(), wire(t, env)); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(envelope.DefaultWindow) // still inside the window
	if _, err := f.opener.Open(context.Background(), wire(t, env)); !errors.Is(err, envelope.ErrReplay) {
		t.Fatalf("second Open: %v, want ErrReplay", err)
	}
	f.now = f.now.Add(time.Second) // outside: stale, not a replay, and never opened
	if _, err := f.opener.Open(context.Background(), wire(t, env)); !errors.Is(err, envelope.ErrStale) {
		t.Fatalf("Open after the window: %v, want ErrStale", err)
	}
}

func TestForgedEnvelopeDoesNotConsumeNonce(t *testing.T) {
	f := newFixture(t)
	env := f.seal(t, messages(1))
	forged := wire(t, env)
	forged.Sig[0] ^= 1
	if _, err := f.opener.Open(context.Background(), forged); !errors.Is(err, envelope.ErrBadSignature) {
		t.Fatal(err)
	}
	if _, err := f.opener.Open(context.Background(), env); err != nil {
		t.Fatalf("genuine envelope after a forgery with its nonce: %v", err)
	}
}

func TestRecipientKeyRotation(t *testing.T) {
	f := newFixture(t)
	old, next := f.gw, mustRecipientKey(t)
	f.opener.Keys = envelope.NewRecipientKeyring(old, next)
	for _, k := range []*envelope.RecipientKey{old, next} {
		f.sealer.Recipient = k.Public()
		if _, err := f.opener.Open(context.Background(), f.seal(t, messages(1))); err != nil {
			t.Fatalf("envelope sealed to key %s: %v", k.ID, err)
		}
	}
	f.opener.Keys = envelope.NewRecipientKeyring(next) // rotation done
	f.sealer.Recipient = old.Public()
	if _, err := f.opener.Open(context.Background(), f.seal(t, messages(1))); !errors.Is(err, envelope.ErrUnknownKey) {
		t.Fatalf("envelope sealed to the retired key: %v, want ErrUnknownKey", err)
	}
}

func TestSenderKeyRotation(t *testing.T) {
	f := newFixture(t)
	old, next := f.core, mustSigningKey(t)
	f.opener.Senders.Pin(tenant, next.Public())
	for _, k := range []*envelope.SigningKey{old, next} {
		f.sealer.Key = k
		if _, err := f.opener.Open(context.Background(), f.seal(t, messages(1))); err != nil {
			t.Fatalf("envelope signed by key %s: %v", k.ID, err)
		}
	}
	f.opener.Senders.Unpin(tenant, old.ID)
	f.sealer.Key = old
	if _, err := f.opener.Open(context.Background(), f.seal(t, messages(1))); !errors.Is(err, envelope.ErrUnknownKey) {
		t.Fatalf("envelope signed by the unpinned key: %v, want ErrUnknownKey", err)
	}
}

func TestOpenRejectsTooManyMessages(t *testing.T) {
	f := newFixture(t)
	f.opener.MaxMessages = 5
	if _, err := f.opener.Open(context.Background(), f.seal(t, messages(5))); err != nil {
		t.Fatalf("batch at the limit: %v", err)
	}
	if _, err := f.opener.Open(context.Background(), f.seal(t, messages(6))); !errors.Is(err, envelope.ErrTooLarge) {
		t.Fatalf("batch over the limit: %v, want ErrTooLarge", err)
	}
}

func TestOpenRejectsOversizeMessage(t *testing.T) {
	f := newFixture(t)
	f.opener.MaxMessageBytes = 1024
	big := message(tenant, "big")
	big = append(big[:len(big)-1:len(big)-1], `,"campaign":"`+strings.Repeat("x", 1024)+`"}`...)
	if _, err := f.opener.Open(context.Background(), f.seal(t, []json.RawMessage{message(tenant, "small"), big})); !errors.Is(err, envelope.ErrTooLarge) {
		t.Fatalf("oversize message: %v, want ErrTooLarge", err)
	}
}

func TestSealRefusesMessageOfAnotherTenant(t *testing.T) {
	f := newFixture(t)
	_, err := f.sealer.Seal(tenant, []json.RawMessage{message(tenant, "a"), message("tenant-b", "b")})
	if !errors.Is(err, envelope.ErrTenantMismatch) {
		t.Fatalf("Seal: %v, want ErrTenantMismatch", err)
	}
	if _, err := f.sealer.Seal(tenant, nil); !errors.Is(err, envelope.ErrMalformed) {
		t.Fatalf("Seal of an empty batch: %v, want ErrMalformed", err)
	}
}

func TestDecodeRejectsOversizeEnvelope(t *testing.T) {
	f := newFixture(t)
	body, _ := json.Marshal(f.seal(t, messages(3)))
	if _, err := envelope.Decode(bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatalf("envelope of exactly the limit: %v", err)
	}
	if _, err := envelope.Decode(bytes.NewReader(body), int64(len(body)-1)); !errors.Is(err, envelope.ErrTooLarge) {
		t.Fatalf("envelope one byte over: %v, want ErrTooLarge", err)
	}
}

func TestDecodeIsStrict(t *testing.T) {
	f := newFixture(t)
	body, _ := json.Marshal(f.seal(t, messages(1)))
	good := string(body)
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("%q not in the envelope", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	tests := []struct {
		name, body string
		want       error
	}{
		{"unknown field", replace(`{"v":1,`, `{"v":1,"x":1,`), envelope.ErrMalformed},
		{"duplicate field", replace(`{"v":1,`, `{"v":1,"v":1,`), envelope.ErrMalformed},
		{"field name in another case", replace(`"tenant":`, `"Tenant":`), envelope.ErrMalformed},
		{"missing field", replace(`{"v":1,`, `{`), envelope.ErrMalformed},
		{"null field", replace(`"ts":`, `"ts":null,"x":`), envelope.ErrMalformed},
		{"fractional ts", replace(`"ts":`, `"ts":1.5,"x":`), envelope.ErrMalformed},
		{"string v", replace(`{"v":1,`, `{"v":"1",`), envelope.ErrMalformed},
		{"padded base64", replace(`"nonce":"`, `"nonce":"==`), envelope.ErrMalformed},
		{"standard base64", good[:strings.Index(good, `"sig":"`)+7] + "+" + good[strings.Index(good, `"sig":"`)+8:], envelope.ErrMalformed},
		{"newline inside base64", replace(`"nonce":"`, `"nonce":"\n`), envelope.ErrMalformed},
		{"trailing data", good + "{}", envelope.ErrMalformed},
		{"not an object", "[" + good + "]", envelope.ErrMalformed},
		{"truncated", good[:len(good)/2], envelope.ErrMalformed},
		{"empty", "", envelope.ErrMalformed},
		{"newer version, other fields", `{"v":2,"suite":"x"}`, envelope.ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := envelope.Decode(strings.NewReader(tt.body), 0); !errors.Is(err, tt.want) {
				t.Fatalf("Decode: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := envelope.Decode(strings.NewReader(" \n"+good+"\n"), 0); err != nil {
		t.Fatalf("whitespace around the object: %v", err)
	}
}

// TestErrorsNeverQuoteMessageContent: error strings reach logs and the
// core, so they must not carry what a request contained.
func TestErrorsNeverQuoteMessageContent(t *testing.T) {
	const canary = "canary.7f3a@example.com"
	inputs := []string{
		`{"` + canary + `":1}`,
		`{"id":"` + canary + `"`,
		`{"id":1` + canary + `}`,
		`["` + canary + `"]`,
		`{"id":"x","tenant":"t","brand":"b","channel":"` + canary + `"}`,
		`{"id":"x","tenant":"t","brand":"b","channel":"email","category":"marketing","purpose":"p","to":{"token":"` + canary + `"}}`,
		`{"id":"x","tenant":"t","brand":"b","channel":"email","category":"marketing","purpose":"p","to":{"subject":"s","` + canary + `":1}}`,
		`{"id":"x","tenant":"t","brand":"b","channel":"email","category":"marketing","purpose":"p","to":{"subject":"s"},"subject":"` + canary + "\\r\\nBcc: x" + `"}`,
		`{"id":"x","tenant":"t","not_before":"` + canary + `"}`,
	}
	for _, in := range inputs {
		_, err := envelope.ParseMessage(json.RawMessage(in))
		if err == nil {
			t.Fatalf("ParseMessage(%s) succeeded", in)
		}
		if strings.Contains(err.Error(), "canary") || strings.Contains(err.Error(), "example.com") {
			t.Errorf("ParseMessage error quotes its input: %v", err)
		}
		_, err = envelope.Decode(strings.NewReader(in), 0)
		if err == nil || strings.Contains(err.Error(), "canary") {
			t.Errorf("Decode error quotes its input: %v", err)
		}
	}
}
