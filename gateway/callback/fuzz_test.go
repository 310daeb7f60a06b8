package callback_test

import (
	"crypto/ed25519"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/callback"
)

// FuzzVerify feeds the core's verifier hostile headers and bodies: it must
// never panic, and it must accept only what the key really signed.
func FuzzVerify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)) // test-only key: all-zero seed
	pub := priv.Public().(ed25519.PublicKey)
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"type":"message.status","seq":1}`)
	f.Add("evt_1", "1700000000", callback.Sign(priv, "evt_1", now, body), body)
	f.Add("evt_1", "1700000000", "v1,AAAA "+callback.Sign(priv, "evt_1", now, body), body)
	f.Add("evt_1", "1700000000", "v1a,", body)
	f.Add("evt_1", "99999999999999999999", "v1a,AAAA v1,BBBB", body)
	f.Add("", "", "", []byte{})
	f.Fuzz(func(t *testing.T, id, ts, sig string, b []byte) {
		h := http.Header{}
		h.Set(callback.HeaderID, id)
		h.Set(callback.HeaderTimestamp, ts)
		h.Set(callback.HeaderSignature, sig)
		if callback.Verify(pub, h, b, now, 0) != nil {
			return
		}
		// Ed25519 signatures are deterministic and Go verifies them
		// strictly, so an accepted header must carry Sign's own output
		// (base64 decoding skips CR and LF, so ignore those).
		secs, err := strconv.ParseInt(h.Get(callback.HeaderTimestamp), 10, 64)
		want := callback.Sign(priv, h.Get(callback.HeaderID), time.Unix(secs, 0), b)
		clean := strings.NewReplacer("\r", "", "\n", "").Replace(h.Get(callback.HeaderSignature))
		if err != nil || !strings.Contains(clean, want) {
			t.Fatalf("accepted id=%q ts=%q sig=%q", id, ts, sig)
		}
	})
}
