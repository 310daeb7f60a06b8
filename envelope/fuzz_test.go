package envelope

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

// vectorParty is the test-only keys of testdata/vectors.json, so that fuzz
// seeds built from the vectors reach past the signature check.
func vectorParty(t testing.TB) (v vectors, s *Sealer, newOpener func() *Opener) {
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	rk, err := newRecipientKey(unhex(t, v.RecipientSeed))
	if err != nil {
		t.Fatal(err)
	}
	sk := newSigningKey(unhex(t, v.SenderSeed))
	now := func() time.Time { return time.Unix(v.TS, 0) }
	senders := NewSenderKeyring()
	senders.Pin(v.Tenant, sk.Public())
	s = &Sealer{Key: sk, Recipient: rk.Public(), Now: now}
	return v, s, func() *Opener {
		return &Opener{Keys: NewRecipientKeyring(rk), Senders: senders, Replay: NewMemoryReplayCache(now), Now: now}
	}
}

// checkOpened asserts what every successfully opened batch satisfies.
func checkOpened(t *testing.T, env *Envelope, b *Batch, o *Opener) {
	if len(b.Messages) == 0 || len(b.Messages) != len(b.Digests) || b.Root != MerkleRoot(b.Digests) {
		t.Fatal("opened an inconsistent batch")
	}
	if !VerifyBatchSignature(o.Senders.Key(env.Tenant, env.KidSender), b.Header, b.Root, b.InnerSig) {
		t.Fatal("opened a batch whose inner signature does not verify")
	}
	for i, m := range b.Messages {
		if err := checkTenant(m, env.Tenant); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !VerifyInclusion(b.Root, len(b.Messages), i, b.Digests[i], b.InclusionProof(i)) {
			t.Fatalf("message %d: inclusion proof does not verify", i)
		}
	}
}

func isSentinel(err error) bool {
	for _, s := range []error{ErrMalformed, ErrVersion, ErrTooLarge, ErrUnknownKey, ErrBadSignature,
		ErrStale, ErrReplay, ErrDecrypt, ErrTenantMismatch, ErrUnavailable} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzDecodeOpen: decoding and opening arbitrary bytes never panics, fails
// only with a sentinel error, and opens only consistent batches.
func FuzzDecodeOpen(f *testing.F) {
	v, _, newOpener := vectorParty(f)
	f.Add([]byte(v.Envelope))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Decode(bytes.NewReader(data), 1<<20)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("Decode: non-sentinel error %v", err)
			}
			return
		}
		o := newOpener()
		b, err := o.Open(context.Background(), env)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("Open: non-sentinel error %v", err)
			}
			return
		}
		checkOpened(t, env, b, o)
	})
}

// FuzzOpenBatch: whatever batch the pinned core signs and seals — its
// "messages" being arbitrary bytes, its root and inner signature computed
// over them where possible — opening never panics and opens only
// consistent batches.
func FuzzOpenBatch(f *testing.F) {
	v, s, newOpener := vectorParty(f)
	canon, _ := json.Marshal(v.Canonical)
	f.Add(canon)
	f.Fuzz(func(t *testing.T, messages []byte) {
		env, err := s.seal(v.Tenant, func(h []byte) ([]byte, error) {
			var raws []json.RawMessage
			var root [32]byte
			if json.Unmarshal(messages, &raws) == nil {
				ds := make([][32]byte, len(raws))
				for i, r := range raws {
					ds[i], _ = Digest(r)
				}
				root = MerkleRoot(ds)
			}
			sig, _ := s.Key.sign(innerSigned(h, root))
			var pt bytes.Buffer
			pt.WriteString(`{"messages":`)
			pt.Write(messages)
			pt.WriteString(`,"root":"` + b64.EncodeToString(root[:]) + `","sig":"` + b64.EncodeToString(sig) + `"}`)
			return pt.Bytes(), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		o := newOpener()
		b, err := o.Open(context.Background(), env)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("Open: non-sentinel error %v", err)
			}
			return
		}
		checkOpened(t, env, b, o)
	})
}

// FuzzParseMessage: parsing never panics, fails only with
// ErrInvalidMessage, and a parsed message survives marshalling.
func FuzzParseMessage(f *testing.F) {
	v, _, _ := vectorParty(f)
	for _, m := range v.Canonical {
		f.Add([]byte(m))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseMessage(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("non-ErrInvalidMessage error %v", err)
			}
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseMessage(again); err != nil {
			t.Fatalf("marshalled message does not parse: %v", err)
		}
	})
}
