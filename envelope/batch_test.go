package envelope

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testParty is a core and a gateway that trust each other for one tenant,
// at a fixed time.
type testParty struct {
	sealer *Sealer
	opener *Opener
	key    *SigningKey
}

func newTestParty(t testing.TB) *testParty {
	t.Helper()
	sk, err := GenerateSigningKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := GenerateRecipientKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Unix(1767225600, 0) }
	senders := NewSenderKeyring()
	senders.Pin("tenant-a", sk.Public())
	return &testParty{
		key:    sk,
		sealer: &Sealer{Key: sk, Recipient: rk.Public(), Now: now},
		opener: &Opener{Keys: NewRecipientKeyring(rk), Senders: senders, Replay: NewMemoryReplayCache(now), Now: now},
	}
}

// sealPlaintext seals whatever plaintext makes, properly encrypted and
// signed: what a buggy or compromised core could send.
func (p *testParty) sealPlaintext(t testing.TB, makePT func(header []byte) string) *Envelope {
	t.Helper()
	env, err := p.sealer.seal("tenant-a", func(h []byte) ([]byte, error) { return []byte(makePT(h)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// batchJSON builds a plaintext over msgs with a correct root and inner
// signature unless told otherwise.
func (p *testParty) batchJSON(t testing.TB, h []byte, msgs []string, editRoot func(*[32]byte), signer *SigningKey) string {
	t.Helper()
	digests := make([][32]byte, len(msgs))
	for i, m := range msgs {
		d, err := Digest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		digests[i] = d
	}
	root := MerkleRoot(digests)
	sig, err := signer.sign(innerSigned(h, root))
	if err != nil {
		t.Fatal(err)
	}
	if editRoot != nil {
		editRoot(&root)
	}
	raws := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		raws[i] = json.RawMessage(m)
	}
	return string(plaintext(raws, root, sig))
}

func msgOf(tenant string) string {
	return fmt.Sprintf(`{"id":"m","tenant":%q,"brand":"b","channel":"sms","category":"transactional","purpose":"otp","to":{"subject":"u"},"text":"1234"}`, tenant)
}

// TestOpenRejectsInconsistentBatch: a batch that decrypts under a valid
// outer signature still opens only if it is well-formed, its root matches
// its messages, the core signed that root, and every message is the
// envelope's tenant's.
func TestOpenRejectsInconsistentBatch(t *testing.T) {
	p := newTestParty(t)
	other, _ := GenerateSigningKey(nil)
	ok := msgOf("tenant-a")
	tests := []struct {
		name string
		pt   func(h []byte) string
		want error
	}{
		{"well-formed batch opens", func(h []byte) string { return p.batchJSON(t, h, []string{ok, ok}, nil, p.key) }, nil},
		{"message tenant differs from envelope tenant", func(h []byte) string {
			return p.batchJSON(t, h, []string{ok, msgOf("tenant-b")}, nil, p.key)
		}, ErrTenantMismatch},
		{"message without tenant", func(h []byte) string {
			return p.batchJSON(t, h, []string{`{"id":"m"}`}, nil, p.key)
		}, ErrTenantMismatch},
		{"tenant in another case", func(h []byte) string {
			return p.batchJSON(t, h, []string{`{"Tenant":"tenant-a","tenant":"tenant-b"}`}, nil, p.key)
		}, ErrTenantMismatch},
		{"root does not match messages", func(h []byte) string {
			return p.batchJSON(t, h, []string{ok}, func(r *[32]byte) { r[0] ^= 1 }, p.key)
		}, ErrMalformed},
		{"inner signature by another key", func(h []byte) string { return p.batchJSON(t, h, []string{ok}, nil, other) }, ErrBadSignature},
		{"inner signature over another header", func(h []byte) string {
			return p.batchJSON(t, append([]byte{0}, h...), []string{ok}, nil, p.key)
		}, ErrBadSignature},
		{"empty batch", func(h []byte) string { return p.batchJSON(t, h, nil, nil, p.key) }, ErrMalformed},
		{"messages is null", func(h []byte) string { return `{"messages":null,"root":"","sig":""}` }, ErrMalformed},
		{"message not an object", func(h []byte) string { return `{"messages":[[1]],"root":"","sig":""}` }, ErrMalformed},
		{"message with duplicate key", func(h []byte) string {
			return `{"messages":[{"tenant":"tenant-a","tenant":"tenant-a"}],"root":"","sig":""}`
		}, ErrMalformed},
		{"unknown batch field", func(h []byte) string {
			return strings.Replace(p.batchJSON(t, h, []string{ok}, nil, p.key), `{"messages"`, `{"x":1,"messages"`, 1)
		}, ErrMalformed},
		{"missing sig", func(h []byte) string { return `{"messages":[` + ok + `],"root":""}` }, ErrMalformed},
		{"not JSON", func(h []byte) string { return "\x00\x01" }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := p.opener.Open(context.Background(), p.sealPlaintext(t, tt.pt))
			if !errors.Is(err, tt.want) || (err == nil) != (b != nil) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestValidlySignedGarbageDoesNotDecrypt: a ciphertext the pinned core
// signed but that is not an HPKE ciphertext under the header is ErrDecrypt.
func TestValidlySignedGarbageDoesNotDecrypt(t *testing.T) {
	p := newTestParty(t)
	resign := func(e *Envelope) {
		var err error
		if e.Sig, err = p.key.sign(outerSigned(e.header(), e.Enc, e.CT)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		edit func(*Envelope)
	}{
		{"ciphertext flipped", func(e *Envelope) { e.CT[0] ^= 1 }},
		{"encapsulated key flipped", func(e *Envelope) { e.Enc[0] ^= 1 }},
		{"header changed after sealing (info binds it)", func(e *Envelope) { e.Nonce[0] ^= 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := p.sealPlaintext(t, func(h []byte) string { return p.batchJSON(t, h, []string{msgOf("tenant-a")}, nil, p.key) })
			tt.edit(env)
			resign(env)
			if _, err := p.opener.Open(context.Background(), env); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("Open: %v, want ErrDecrypt", err)
			}
		})
	}
}

// TestOpenFailsClosedWithoutReplayCache: an Opener missing a part refuses
// rather than skipping the check.
func TestOpenFailsClosedWithoutReplayCache(t *testing.T) {
	p := newTestParty(t)
	p.opener.Replay = nil
	env := p.sealPlaintext(t, func(h []byte) string { return p.batchJSON(t, h, []string{msgOf("tenant-a")}, nil, p.key) })
	if _, err := p.opener.Open(context.Background(), env); err == nil {
		t.Fatal("Open without a replay cache succeeded")
	}
}
