package envelope

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	xwingkem "github.com/cloudflare/circl/kem/xwing"
	"golang.org/x/crypto/chacha20poly1305"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the inputs in vectors_test.go")

const vectorsFile = "testdata/vectors.json"

// vectors is testdata/vectors.json: fixed inputs, then every intermediate
// value and the resulting envelope, so that a second implementation can
// check itself step by step. Byte strings are lowercase hex, except inside
// key files and the envelope, which are on the wire as they are.
type vectors struct {
	Comment []string `json:"comment"`

	// Inputs.
	RecipientSeed     string   `json:"recipient_seed"` // X-Wing private key
	SenderSeed        string   `json:"sender_seed"`    // Ed25519 private key (RFC 8032 seed)
	Tenant            string   `json:"tenant"`
	TS                int64    `json:"ts"`
	Nonce             string   `json:"nonce"`
	EncapsulationSeed string   `json:"encapsulation_seed"` // the X-Wing encapsulation randomness
	Messages          []string `json:"messages"`           // as the core sends them

	// Keys.
	RecipientPublic      string `json:"recipient_public"`
	KidRecipient         KeyID  `json:"kid_recipient"`
	RecipientFingerprint string `json:"recipient_fingerprint"`
	RecipientKeyFile     string `json:"recipient_key_file"`
	RecipientPubFile     string `json:"recipient_pub_file"`
	SenderPublic         string `json:"sender_public"`
	KidSender            KeyID  `json:"kid_sender"`
	SenderFingerprint    string `json:"sender_fingerprint"`
	SenderKeyFile        string `json:"sender_key_file"`
	SenderPubFile        string `json:"sender_pub_file"`

	// The batch.
	Canonical       []string   `json:"canonical_messages"` // RFC 8785
	Digests         []string   `json:"digests"`            // SHA-256(canonical)
	LeafHashes      []string   `json:"leaf_hashes"`        // SHA-256(0x00 ‖ digest)
	Root            string     `json:"root"`
	InclusionProofs [][]string `json:"inclusion_proofs"`

	// The envelope.
	Header      string `json:"header"`
	HPKEInfo    string `json:"hpke_info"`
	InnerSigned string `json:"inner_signed"`
	InnerSig    string `json:"inner_sig"`
	Plaintext   string `json:"plaintext"`
	Enc         string `json:"enc"`
	CT          string `json:"ct"`
	OuterSigned string `json:"outer_signed"`
	Sig         string `json:"sig"`
	Envelope    string `json:"envelope"` // the POST /v1/messages body
}

// vectorInputs are the inputs of testdata/vectors.json.
func vectorInputs() vectors {
	seq := func(from, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(from + i)
		}
		return hex.EncodeToString(b)
	}
	return vectors{
		Comment: []string{
			"TEST-ONLY KEYS AND DATA. These private keys are published: never use them for anything but tests.",
			"blindpost envelope v1 test vectors; see docs/protocol.md. Byte strings are lowercase hex,",
			"except inside key files and the envelope (base64url without padding, as on the wire).",
			"Seal's randomness is nonce then encapsulation_seed, read in that order.",
			"Regenerate: go test ./envelope -run TestVectors -update",
		},
		RecipientSeed:     seq(0x00, 32),
		SenderSeed:        seq(0x20, 32),
		Tenant:            "tenant-test",
		TS:                1767225600, // 2026-01-01T00:00:00Z
		Nonce:             seq(0x40, 16),
		EncapsulationSeed: seq(0x50, 64),
		Messages: []string{
			`{"tenant": "tenant-test", "id": "msg-0001", "brand": "brand-1", "channel": "email",
 "category": "transactional", "purpose": "password_reset", "to": {"subject": "user-42"},
 "from": "noreply@example.com", "subject": "Reset your password",
 "html": "<p>Hello {{pii.first_name}}, \u00e9t\u00e9 &amp; co</p>", "text": "Hello {{pii.first_name}}"}`,
			`{"id":"msg-0002","tenant":"tenant-test","brand":"brand-1","channel":"sms","category":"transactional",` +
				`"purpose":"payment_receipt","to":{"token":"tok_phone_v1_abcdefghijklmnopqrstuvwxyz234567"},"text":"Paid: 10 EUR"}`,
			`{"id":"msg-0003","tenant":"tenant-test","brand":"brand-2","channel":"push","category":"marketing",` +
				`"purpose":"promotion","to":{"subject":"user-7"},"subject":"10 free spins","text":"Today only",` +
				`"campaign":"spring-2026","not_before":"2026-01-01T09:00:00Z","expires_at":"2026-01-02T09:00:00+01:00"}`,
		},
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexes(bs [][32]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = hex.EncodeToString(b[:])
	}
	return out
}

// generate computes every output of v from its inputs, through the same
// exported paths the core and the gateway use.
func generate(t testing.TB, in vectors) vectors {
	t.Helper()
	v := vectors{Comment: in.Comment, RecipientSeed: in.RecipientSeed, SenderSeed: in.SenderSeed,
		Tenant: in.Tenant, TS: in.TS, Nonce: in.Nonce, EncapsulationSeed: in.EncapsulationSeed, Messages: in.Messages}

	rk, err := GenerateRecipientKey(bytes.NewReader(unhex(t, in.RecipientSeed)))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := GenerateSigningKey(bytes.NewReader(unhex(t, in.SenderSeed)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rand := bytes.NewReader(append(unhex(t, in.RecipientSeed), unhex(t, in.SenderSeed)...))
	if err := WriteGatewayKeys(dir, rand); err != nil {
		t.Fatal(err)
	}
	file := func(name string) string {
		b, err := os.ReadFile(dir + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	rpub := rk.Public().Bytes()
	v.RecipientPublic, v.KidRecipient, v.RecipientFingerprint = hex.EncodeToString(rpub), rk.ID, Fingerprint(rpub)
	v.RecipientKeyFile, v.RecipientPubFile = file(FileHPKEKey), file(FileHPKEPub)
	spub := sk.Public().Public
	v.SenderPublic, v.KidSender, v.SenderFingerprint = hex.EncodeToString(spub), sk.ID, Fingerprint(spub)
	v.SenderKeyFile, v.SenderPubFile = file(FileSigningKey), file(FileSigningPub)

	msgs := make([]json.RawMessage, len(in.Messages))
	digests := make([][32]byte, len(in.Messages))
	for i, m := range in.Messages {
		msgs[i] = json.RawMessage(m)
		c, err := canonical(msgs[i])
		if err != nil {
			t.Fatal(err)
		}
		v.Canonical = append(v.Canonical, string(c))
		if digests[i], err = Digest(msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	v.Digests = hexes(digests)
	levels := treeLevels(digests)
	v.LeafHashes = hexes(levels[0])
	root := MerkleRoot(digests)
	v.Root = hex.EncodeToString(root[:])
	for i := range digests {
		v.InclusionProofs = append(v.InclusionProofs, hexes(inclusionProof(levels, i)))
	}

	s := &Sealer{
		Key: sk, Recipient: rk.Public(),
		Rand: bytes.NewReader(append(unhex(t, in.Nonce), unhex(t, in.EncapsulationSeed)...)),
		Now:  func() time.Time { return time.Unix(in.TS, 0) },
	}
	env, err := s.Seal(in.Tenant, msgs)
	if err != nil {
		t.Fatal(err)
	}
	h := env.header()
	v.Header, v.HPKEInfo = hex.EncodeToString(h), hex.EncodeToString(info(h))
	v.InnerSigned = hex.EncodeToString(innerSigned(h, root))
	v.Enc, v.CT, v.Sig = hex.EncodeToString(env.Enc), hex.EncodeToString(env.CT), hex.EncodeToString(env.Sig)
	v.OuterSigned = hex.EncodeToString(outerSigned(h, env.Enc, env.CT))

	r, err := suite.NewReceiver(rk.priv, info(h))
	if err != nil {
		t.Fatal(err)
	}
	o, err := r.Setup(env.Enc)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := o.Open(env.CT, nil)
	if err != nil {
		t.Fatal(err)
	}
	v.Plaintext = string(pt)
	var batch struct{ Sig string }
	if err := json.Unmarshal(pt, &batch); err != nil {
		t.Fatal(err)
	}
	sig, err := decodeB64(batch.Sig)
	if err != nil {
		t.Fatal(err)
	}
	v.InnerSig = hex.EncodeToString(sig)
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	v.Envelope = string(body)
	return v
}

func TestVectors(t *testing.T) {
	if *update {
		var out bytes.Buffer
		enc := json.NewEncoder(&out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(generate(t, vectorInputs())); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsFile, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", vectorsFile)
	}
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var want vectors
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&want); err != nil {
		t.Fatal(err)
	}

	t.Run("every intermediate value recomputes", func(t *testing.T) {
		got := generate(t, want)
		gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
		for i := 0; i < gv.NumField(); i++ {
			name := strings.Split(gv.Type().Field(i).Tag.Get("json"), ",")[0]
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("%s differs:\n got %v\nwant %v", name, gv.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
	})

	t.Run("the envelope opens with the test private key", func(t *testing.T) {
		env, err := Decode(strings.NewReader(want.Envelope), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(env.header()); got != want.Header {
			t.Errorf("header of the decoded envelope: %s, want %s", got, want.Header)
		}
		rk, err := newRecipientKey(unhex(t, want.RecipientSeed))
		if err != nil {
			t.Fatal(err)
		}
		vk, err := NewVerifyingKey(unhex(t, want.SenderPublic))
		if err != nil {
			t.Fatal(err)
		}
		senders := NewSenderKeyring()
		senders.Pin(want.Tenant, vk)
		now := func() time.Time { return time.Unix(want.TS, 0) }
		o := &Opener{Keys: NewRecipientKeyring(rk), Senders: senders, Replay: NewMemoryReplayCache(now), Now: now}
		b, err := o.Open(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]string, len(b.Messages))
		for i, m := range b.Messages {
			got[i] = string(m)
			if _, err := ParseMessage(m); err != nil {
				t.Errorf("message %d: %v", i, err)
			}
		}
		if !reflect.DeepEqual(got, want.Canonical) {
			t.Errorf("messages:\n got %q\nwant %q", got, want.Canonical)
		}
		if !reflect.DeepEqual(hexes(b.Digests), want.Digests) || hex.EncodeToString(b.Root[:]) != want.Root ||
			hex.EncodeToString(b.InnerSig) != want.InnerSig || hex.EncodeToString(b.Header) != want.Header {
			t.Error("opened batch differs from the vectors")
		}
		for i := range b.Messages {
			if p := hexesOf(b.InclusionProof(i)); !reflect.DeepEqual(p, want.InclusionProofs[i]) {
				t.Errorf("inclusion proof %d: %v, want %v", i, p, want.InclusionProofs[i])
			}
		}
	})

	t.Run("key files load", func(t *testing.T) {
		dir := t.TempDir()
		for name, content := range map[string]string{
			FileHPKEKey: want.RecipientKeyFile, FileHPKEPub: want.RecipientPubFile,
			FileSigningKey: want.SenderKeyFile, FileSigningPub: want.SenderPubFile,
		} {
			if err := os.WriteFile(dir+"/"+name, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		rk, err := LoadRecipientKey(dir + "/" + FileHPKEKey)
		if err != nil || rk.ID != want.KidRecipient {
			t.Errorf("hpke.key: %v, id %v", err, rk)
		}
		rp, err := LoadRecipientPublicKey(dir + "/" + FileHPKEPub)
		if err != nil || rp.ID != want.KidRecipient {
			t.Errorf("hpke.pub: %v", err)
		}
		sk, err := LoadSigningKey(dir + "/" + FileSigningKey)
		if err != nil || sk.ID != want.KidSender {
			t.Errorf("signing.key: %v", err)
		}
		vk, err := LoadVerifyingKey(dir + "/" + FileSigningPub)
		if err != nil || vk.ID != want.KidSender {
			t.Errorf("signing.pub: %v", err)
		}
	})
}

func hexesOf(bs [][32]byte) []string {
	if len(bs) == 0 {
		return []string{}
	}
	return hexes(bs)
}

// TestVectorHeaderLayout reads the vectors' header field by field, as
// docs/protocol.md lays it out, independently of the code that wrote it.
func TestVectorHeaderLayout(t *testing.T) {
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	h := unhex(t, v.Header)
	var fields []string
	for len(h) >= 4 {
		n := int(h[0])<<24 | int(h[1])<<16 | int(h[2])<<8 | int(h[3])
		if 4+n > len(h) {
			t.Fatalf("header field overruns the header")
		}
		fields = append(fields, hex.EncodeToString(h[4:4+n]))
		h = h[4+n:]
	}
	want := []string{
		"00000001",
		hex.EncodeToString([]byte(v.Tenant)),
		hex.EncodeToString([]byte(v.KidSender)),
		hex.EncodeToString([]byte(v.KidRecipient)),
		fmt.Sprintf("%016x", v.TS),
		v.Nonce,
	}
	if len(h) != 0 || !reflect.DeepEqual(fields, want) {
		t.Fatalf("header fields %v, want %v", fields, want)
	}
}

// TestVectorsFollowRFC9180 opens the vectors' ciphertext with the HPKE key
// schedule written out by hand from RFC 9180 §5.1 (base mode) over the
// X-Wing shared secret, and checks both signatures with crypto/ed25519
// alone: what a second implementation would do, without circl's hpke.
func TestVectorsFollowRFC9180(t *testing.T) {
	data, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	ss := xwingkem.Decapsulate(unhex(t, v.Enc), unhex(t, v.RecipientSeed))

	suiteID := []byte("HPKE\x64\x7a\x00\x01\x00\x03") // KEM X-Wing 0x647a, HKDF-SHA256 0x0001, ChaCha20-Poly1305 0x0003
	labeled := func(label string, b []byte) []byte {
		return append(append(append([]byte("HPKE-v1"), suiteID...), label...), b...)
	}
	extract := func(salt []byte, label string, ikm []byte) []byte {
		prk, err := hkdf.Extract(sha256.New, labeled(label, ikm), salt)
		if err != nil {
			t.Fatal(err)
		}
		return prk
	}
	expand := func(prk []byte, label string, info []byte, n int) []byte {
		out, err := hkdf.Expand(sha256.New, prk, string(append([]byte{0, byte(n)}, labeled(label, info)...)), n)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ctx := append([]byte{0}, extract(nil, "psk_id_hash", nil)...) // mode_base
	ctx = append(ctx, extract(nil, "info_hash", unhex(t, v.HPKEInfo))...)
	secret := extract(ss, "secret", nil)
	aead, err := chacha20poly1305.New(expand(secret, "key", ctx, 32))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := aead.Open(nil, expand(secret, "base_nonce", ctx, 12), unhex(t, v.CT), nil)
	if err != nil {
		t.Fatalf("ciphertext does not open with the RFC 9180 key schedule: %v", err)
	}
	if string(pt) != v.Plaintext {
		t.Errorf("plaintext %q, want %q", pt, v.Plaintext)
	}

	pub := ed25519.PublicKey(unhex(t, v.SenderPublic))
	if !ed25519.Verify(pub, unhex(t, v.OuterSigned), unhex(t, v.Sig)) {
		t.Error("outer signature does not verify over outer_signed")
	}
	if !ed25519.Verify(pub, unhex(t, v.InnerSigned), unhex(t, v.InnerSig)) {
		t.Error("inner signature does not verify over inner_signed")
	}
	wantOuter := append(append([]byte(Label), unhex(t, v.Header)...), appendField(appendField(nil, unhex(t, v.Enc)), unhex(t, v.CT))...)
	if hex.EncodeToString(wantOuter) != v.OuterSigned {
		t.Error("outer_signed is not Label ‖ header ‖ len ‖ enc ‖ len ‖ ct")
	}
	wantInner := append(append([]byte(BatchLabel), unhex(t, v.Header)...), unhex(t, v.Root)...)
	if hex.EncodeToString(wantInner) != v.InnerSigned {
		t.Error("inner_signed is not BatchLabel ‖ header ‖ root")
	}
}
