package callback_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/callback"
)

func mustKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func signedHeader(key ed25519.PrivateKey, id string, ts time.Time, body []byte) http.Header {
	h := http.Header{}
	h.Set(callback.HeaderID, id)
	h.Set(callback.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(callback.HeaderSignature, callback.Sign(key, id, ts, body))
	return h
}

func TestSignatureVerification(t *testing.T) {
	pub, priv := mustKey(t)
	otherPub, otherPriv := mustKey(t)
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"message.status","tenant":"t1","id":"m1","status":"sent","seq":1}`)

	tests := []struct {
		name    string
		pub     ed25519.PublicKey
		header  func() http.Header
		body    []byte
		now     time.Time
		wantErr error
	}{
		{"valid signature verifies", pub, func() http.Header { return signedHeader(priv, "evt_1", now, body) }, body, now, nil},
		{"clock skew within tolerance verifies", pub, func() http.Header { return signedHeader(priv, "evt_1", now, body) }, body, now.Add(4 * time.Minute), nil},
		{"tampered body fails", pub, func() http.Header { return signedHeader(priv, "evt_1", now, body) },
			[]byte(`{"type":"message.status","tenant":"t1","id":"m1","status":"delivered","seq":1}`), now, callback.ErrBadSignature},
		{"tampered timestamp fails", pub, func() http.Header {
			h := signedHeader(priv, "evt_1", now, body)
			h.Set(callback.HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}, body, now, callback.ErrBadSignature},
		{"tampered id fails", pub, func() http.Header {
			h := signedHeader(priv, "evt_1", now, body)
			h.Set(callback.HeaderID, "evt_2")
			return h
		}, body, now, callback.ErrBadSignature},
		{"stale timestamp fails", pub, func() http.Header { return signedHeader(priv, "evt_1", now, body) }, body, now.Add(6 * time.Minute), callback.ErrStale},
		{"future timestamp fails", pub, func() http.Header { return signedHeader(priv, "evt_1", now, body) }, body, now.Add(-6 * time.Minute), callback.ErrStale},
		{"other key fails", otherPub, func() http.Header { return signedHeader(priv, "evt_1", now, body) }, body, now, callback.ErrBadSignature},
		{"one of several signatures verifies", pub, func() http.Header {
			h := signedHeader(otherPriv, "evt_1", now, body)
			h.Set(callback.HeaderSignature, "v1,c3ltbWV0cmlj "+h.Get(callback.HeaderSignature)+" "+callback.Sign(priv, "evt_1", now, body))
			return h
		}, body, now, nil},
		{"symmetric v1 signature is not accepted", pub, func() http.Header {
			h := signedHeader(priv, "evt_1", now, body)
			sig := h.Get(callback.HeaderSignature)
			h.Set(callback.HeaderSignature, "v1"+sig[3:])
			return h
		}, body, now, callback.ErrBadSignature},
		{"missing signature header fails", pub, func() http.Header {
			h := signedHeader(priv, "evt_1", now, body)
			h.Del(callback.HeaderSignature)
			return h
		}, body, now, callback.ErrMalformed},
		{"non-numeric timestamp fails", pub, func() http.Header {
			h := signedHeader(priv, "evt_1", now, body)
			h.Set(callback.HeaderTimestamp, "+"+h.Get(callback.HeaderTimestamp))
			return h
		}, body, now, callback.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := callback.Verify(tt.pub, tt.header(), tt.body, tt.now, 0)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const base, limit = time.Second, time.Minute
	almostOne := func() float64 { return 0.999999 }
	tests := []struct {
		name    string
		attempt int
		random  func() float64
		want    time.Duration
	}{
		{"first failure waits up to base", 1, almostOne, base},
		{"attempt 0 is the first failure", 0, almostOne, base},
		{"ceiling doubles each attempt", 4, almostOne, 8 * base},
		{"ceiling is capped", 7, almostOne, limit},
		{"huge attempt does not overflow", 1 << 20, almostOne, limit},
		{"jitter is full: zero is possible", 5, func() float64 { return 0 }, 0},
		{"jitter scales the ceiling", 3, func() float64 { return 0.5 }, 2 * base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := callback.Backoff(tt.attempt, base, limit, tt.random)
			if d := (got - tt.want).Abs(); d > tt.want/1000 {
				t.Fatalf("Backoff(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
	t.Run("default random stays in range", func(t *testing.T) {
		for range 1000 {
			if d := callback.Backoff(3, base, limit, nil); d < 0 || d >= 4*base {
				t.Fatalf("Backoff(3) = %v, want in [0, 4s)", d)
			}
		}
	})
}
