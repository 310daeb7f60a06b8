// Package envelope is the sealed, signed request format that the vendor's
// core sends to the operator's gateway (POST /v1/messages), and the keys both
// sides use for it.
//
// It sits on the trust boundary and both sides import it. The core seals a
// batch of message requests to the gateway's HPKE (X-Wing) key and signs it
// with its Ed25519 key; the gateway checks the signature against the key it
// pinned for the tenant, the time window and the nonce, and only then
// decrypts. Inside, the core signs the Merkle root of the messages too, so
// that the operator's audit log can later prove which messages the core
// asked for without the HPKE private key. Nothing here handles personal
// data: messages name players by subject id or token.
//
// The wire format is specified in docs/protocol.md, with test vectors in
// testdata/vectors.json.
package envelope

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

const (
	// Version is the protocol version, the envelope's "v".
	Version = 1
	// Label prefixes the HPKE info and the bytes of the outer signature.
	Label = "blindpost-envelope-v1"
	// BatchLabel prefixes the bytes of the inner (batch) signature. The two
	// labels keep one signature from ever passing for the other.
	BatchLabel = "blindpost-batch-v1"
	// NonceSize is the length of an envelope's random nonce.
	NonceSize = 16

	DefaultWindow           = 5 * time.Minute
	DefaultMaxMessages      = 500
	DefaultMaxMessageBytes  = 1 << 20
	DefaultMaxEnvelopeBytes = 16 << 20
)

// Errors. Open and Decode return errors that wrap exactly one of these
// (plus, from Open, whatever a ReplayCache returns); their text never
// contains message content.
var (
	ErrMalformed      = errors.New("envelope: malformed")
	ErrVersion        = errors.New("envelope: unsupported version")
	ErrTooLarge       = errors.New("envelope: too large")
	ErrUnknownKey     = errors.New("envelope: unknown key")
	ErrBadSignature   = errors.New("envelope: bad signature")
	ErrStale          = errors.New("envelope: timestamp outside the window")
	ErrReplay         = errors.New("envelope: replayed nonce")
	ErrDecrypt        = errors.New("envelope: does not decrypt")
	ErrTenantMismatch = errors.New("envelope: tenant mismatch")
	ErrInvalidMessage = errors.New("envelope: invalid message")
	// ErrUnavailable is retryable: the replay cache could not vouch for a
	// nonce (full or unreachable), so the envelope was refused unopened.
	ErrUnavailable = errors.New("envelope: replay cache unavailable")
)

// Envelope is the body of POST /v1/messages. In JSON its byte fields are
// base64url without padding.
type Envelope struct {
	V            int    `json:"v"`
	Tenant       string `json:"tenant"`
	KidSender    KeyID  `json:"kid_sender"`
	KidRecipient KeyID  `json:"kid_recipient"`
	TS           int64  `json:"ts"` // Unix seconds
	Nonce        []byte `json:"nonce"`
	Enc          []byte `json:"enc"` // HPKE encapsulated key
	CT           []byte `json:"ct"`  // HPKE ciphertext of the batch
	Sig          []byte `json:"sig"` // Ed25519, see outerSigned
}

type wireEnvelope struct {
	V            int    `json:"v"`
	Tenant       string `json:"tenant"`
	KidSender    KeyID  `json:"kid_sender"`
	KidRecipient KeyID  `json:"kid_recipient"`
	TS           int64  `json:"ts"`
	Nonce        string `json:"nonce"`
	Enc          string `json:"enc"`
	CT           string `json:"ct"`
	Sig          string `json:"sig"`
}

// MarshalJSON encodes e with base64url byte fields.
func (e Envelope) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireEnvelope{
		V: e.V, Tenant: e.Tenant, KidSender: e.KidSender, KidRecipient: e.KidRecipient, TS: e.TS,
		Nonce: b64.EncodeToString(e.Nonce), Enc: b64.EncodeToString(e.Enc),
		CT: b64.EncodeToString(e.CT), Sig: b64.EncodeToString(e.Sig),
	})
}

// UnmarshalJSON decodes strictly: every field required, none unknown,
// repeated or differently cased, integers without fraction or exponent. A
// "v" other than Version is reported as ErrVersion before anything else, so
// a newer client learns what is wrong.
func (e *Envelope) UnmarshalJSON(data []byte) error {
	ms, err := readObject(data)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	for _, m := range ms {
		var v int
		if m.name == "v" && json.Unmarshal(m.value, &v) == nil && v != Version {
			return fmt.Errorf("%w: v=%d", ErrVersion, v)
		}
	}
	var w wireEnvelope
	fields := map[string]any{
		"v": &w.V, "tenant": &w.Tenant, "kid_sender": &w.KidSender, "kid_recipient": &w.KidRecipient,
		"ts": &w.TS, "nonce": &w.Nonce, "enc": &w.Enc, "ct": &w.CT, "sig": &w.Sig,
	}
	for _, m := range ms {
		dst, ok := fields[m.name]
		if !ok {
			return fmt.Errorf("%w: unknown field %s", ErrMalformed, fieldName(m.name))
		}
		if string(m.value) == "null" || json.Unmarshal(m.value, dst) != nil {
			return fmt.Errorf("%w: field %q has the wrong type", ErrMalformed, m.name)
		}
		delete(fields, m.name)
	}
	for _, name := range [...]string{"v", "tenant", "kid_sender", "kid_recipient", "ts", "nonce", "enc", "ct", "sig"} {
		if _, missing := fields[name]; missing {
			return fmt.Errorf("%w: field %q is missing", ErrMalformed, name)
		}
	}
	out := Envelope{V: w.V, Tenant: w.Tenant, KidSender: w.KidSender, KidRecipient: w.KidRecipient, TS: w.TS}
	for _, f := range [...]struct {
		name string
		s    string
		dst  *[]byte
	}{{"nonce", w.Nonce, &out.Nonce}, {"enc", w.Enc, &out.Enc}, {"ct", w.CT, &out.CT}, {"sig", w.Sig, &out.Sig}} {
		if *f.dst, err = decodeB64(f.s); err != nil {
			return fmt.Errorf("%w: field %q is not base64url without padding", ErrMalformed, f.name)
		}
	}
	*e = out
	return nil
}

// Decode reads one envelope from r, strictly (see UnmarshalJSON). A body
// over maxBytes (DefaultMaxEnvelopeBytes if maxBytes <= 0) is ErrTooLarge.
func Decode(r io.Reader, maxBytes int64) (*Envelope, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxEnvelopeBytes
	}
	data, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), err == nil && int64(len(data)) > maxBytes:
		return nil, fmt.Errorf("%w: envelope over %d bytes", ErrTooLarge, maxBytes)
	case err != nil:
		return nil, fmt.Errorf("envelope: read: %w", err)
	}
	e := new(Envelope)
	if err := e.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return e, nil
}

// header returns the canonical header: every field length-prefixed (a
// 4-byte big-endian length, then the bytes), in a fixed order, so no two
// headers share an encoding.
func (e *Envelope) header() []byte {
	b := make([]byte, 0, 6*4+4+len(e.Tenant)+len(e.KidSender)+len(e.KidRecipient)+8+len(e.Nonce))
	b = appendField(b, binary.BigEndian.AppendUint32(nil, uint32(e.V)))
	b = appendField(b, []byte(e.Tenant))
	b = appendField(b, []byte(e.KidSender))
	b = appendField(b, []byte(e.KidRecipient))
	b = appendField(b, binary.BigEndian.AppendUint64(nil, uint64(e.TS)))
	b = appendField(b, e.Nonce)
	return b
}

func appendField(b, field []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(field)))
	return append(b, field...)
}

// info is the HPKE info: Label ‖ header. It binds the ciphertext to the
// header, so a ciphertext moved under another header does not open.
func info(header []byte) []byte {
	return append([]byte(Label), header...)
}

// outerSigned returns the bytes the outer signature covers: Label ‖ header
// ‖ len ‖ enc ‖ len ‖ ct. Signing the ciphertext (encrypt-then-sign) lets
// the gateway reject a forgery before spending any decryption work on it.
func outerSigned(header, enc, ct []byte) []byte {
	b := make([]byte, 0, len(Label)+len(header)+8+len(enc)+len(ct))
	b = append(b, Label...)
	b = append(b, header...)
	b = appendField(b, enc)
	return appendField(b, ct)
}

// innerSigned returns the bytes the batch signature covers: BatchLabel ‖
// header ‖ root. An auditor can check it from the header and the messages
// alone, without the HPKE key.
func innerSigned(header []byte, root [32]byte) []byte {
	b := make([]byte, 0, len(BatchLabel)+len(header)+len(root))
	b = append(b, BatchLabel...)
	b = append(b, header...)
	return append(b, root[:]...)
}

// VerifyBatchSignature reports whether sig is the batch signature by k over
// header and root, as kept in an audit record.
func VerifyBatchSignature(k *VerifyingKey, header []byte, root [32]byte, sig []byte) bool {
	return k != nil && k.verify(innerSigned(header, root), sig)
}

// checkFields checks what can be checked of e without keys: the version,
// and the syntax and size of every field.
func (e *Envelope) checkFields() error {
	if e.V != Version {
		return fmt.Errorf("%w: v=%d", ErrVersion, e.V)
	}
	if err := checkID(e.Tenant); err != "" {
		return fmt.Errorf("%w: tenant: %s", ErrMalformed, err)
	}
	for _, f := range [...]struct {
		name string
		id   KeyID
	}{{"kid_sender", e.KidSender}, {"kid_recipient", e.KidRecipient}} {
		if !f.id.valid() {
			return fmt.Errorf("%w: %s is not 16 lowercase hex digits", ErrMalformed, f.name)
		}
	}
	for _, f := range [...]struct {
		name string
		b    []byte
		want int
	}{{"nonce", e.Nonce, NonceSize}, {"enc", e.Enc, xwing.CiphertextSize()}, {"sig", e.Sig, 64}} {
		if len(f.b) != f.want {
			return fmt.Errorf("%w: %s is %d bytes, want %d", ErrMalformed, f.name, len(f.b), f.want)
		}
	}
	if len(e.CT) < 16 {
		return fmt.Errorf("%w: ct shorter than the AEAD tag", ErrMalformed)
	}
	return nil
}

// Sealer seals batches on the core's side.
type Sealer struct {
	Key       *SigningKey
	Recipient *RecipientPublicKey
	Rand      io.Reader        // nil: crypto/rand
	Now       func() time.Time // nil: time.Now
}

// Seal makes the envelope of a batch of message requests for tenant. Every
// message must be a JSON object whose "tenant" is tenant; the batch carries
// each in its canonical (RFC 8785) form. Seal does not apply a gateway's
// size limits, which are the gateway's configuration.
func (s *Sealer) Seal(tenant string, msgs []json.RawMessage) (*Envelope, error) {
	if s.Key == nil || s.Recipient == nil || s.Recipient.pub == nil {
		return nil, errors.New("envelope: sealer needs a signing key and a recipient key")
	}
	if err := checkID(tenant); err != "" {
		return nil, fmt.Errorf("%w: tenant: %s", ErrMalformed, err)
	}
	if len(msgs) == 0 {
		return nil, fmt.Errorf("%w: empty batch", ErrMalformed)
	}
	canon := make([]json.RawMessage, len(msgs))
	digests := make([][32]byte, len(msgs))
	for i, m := range msgs {
		c, err := canonical(m)
		if err != nil {
			return nil, fmt.Errorf("%w: message %d: %v", ErrMalformed, i, err)
		}
		if err := checkTenant(c, tenant); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
		canon[i], digests[i] = c, sha256.Sum256(c)
	}
	return s.seal(tenant, func(h []byte) ([]byte, error) {
		root := MerkleRoot(digests)
		sig, err := s.Key.sign(innerSigned(h, root))
		if err != nil {
			return nil, err
		}
		return plaintext(canon, root, sig), nil
	})
}

// seal stamps, encrypts and signs the plaintext that body returns for the
// envelope's header.
func (s *Sealer) seal(tenant string, body func(header []byte) ([]byte, error)) (*Envelope, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	rand := randOrDefault(s.Rand)
	e := &Envelope{
		V: Version, Tenant: tenant, KidSender: s.Key.ID, KidRecipient: s.Recipient.ID,
		TS: now().Unix(), Nonce: make([]byte, NonceSize),
	}
	if _, err := io.ReadFull(rand, e.Nonce); err != nil {
		return nil, fmt.Errorf("envelope: nonce: %w", err)
	}
	h := e.header()
	pt, err := body(h)
	if err != nil {
		return nil, err
	}
	hs, err := suite.NewSender(s.Recipient.pub, info(h))
	if err != nil {
		return nil, fmt.Errorf("envelope: hpke: %w", err)
	}
	enc, sealer, err := hs.Setup(rand)
	if err != nil {
		return nil, fmt.Errorf("envelope: hpke: %w", err)
	}
	if e.CT, err = sealer.Seal(pt, nil); err != nil {
		return nil, fmt.Errorf("envelope: hpke: %w", err)
	}
	e.Enc = enc
	if e.Sig, err = s.Key.sign(outerSigned(h, e.Enc, e.CT)); err != nil {
		return nil, err
	}
	return e, nil
}

// plaintext encodes the batch: {"messages":[…],"root":"…","sig":"…"}.
// Built by hand because encoding/json would HTML-escape the messages.
func plaintext(msgs []json.RawMessage, root [32]byte, sig []byte) []byte {
	n := 64 + len(root)*2 + len(sig)*2
	for _, m := range msgs {
		n += len(m) + 1
	}
	b := bytes.NewBuffer(make([]byte, 0, n))
	b.WriteString(`{"messages":[`)
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(m)
	}
	fmt.Fprintf(b, `],"root":"%s","sig":"%s"}`, b64.EncodeToString(root[:]), b64.EncodeToString(sig))
	return b.Bytes()
}

// checkTenant checks that the canonical message c is for tenant. A map
// matches member names exactly, unlike struct decoding, and canonical JSON
// has no duplicate names.
func checkTenant(c []byte, tenant string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(c, &m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, jsonError(err))
	}
	raw, ok := m["tenant"]
	if !ok {
		return fmt.Errorf("%w: message has no tenant", ErrTenantMismatch)
	}
	var t string
	if json.Unmarshal(raw, &t) != nil || t != tenant {
		return fmt.Errorf("%w: message tenant differs from the envelope's", ErrTenantMismatch)
	}
	return nil
}

// Opener verifies and opens envelopes on the gateway's side. It is safe for
// concurrent use if its ReplayCache is.
type Opener struct {
	Keys            *RecipientKeyring
	Senders         *SenderKeyring
	Replay          ReplayCache
	Now             func() time.Time // nil: time.Now
	Window          time.Duration    // how far ts may be from now; 0: DefaultWindow
	MaxMessages     int              // 0: DefaultMaxMessages
	MaxMessageBytes int              // one message's JSON; 0: DefaultMaxMessageBytes
}

// Batch is an opened envelope: what the core asked for, and what proves it.
type Batch struct {
	Tenant    string
	KidSender KeyID
	Header    []byte            // canonical header bytes
	Messages  []json.RawMessage // each in RFC 8785 canonical form
	Digests   [][32]byte        // SHA-256 of each message
	Root      [32]byte          // RFC 6962 tree hash of Digests
	InnerSig  []byte            // the core's signature of BatchLabel ‖ Header ‖ Root

	levels [][][32]byte // the tree, built by Open; nil for a hand-made Batch
}

// InclusionProof returns the RFC 6962 audit path that proves message i is
// in the batch, for VerifyInclusion. It returns nil if i is out of range.
func (b *Batch) InclusionProof(i int) [][32]byte {
	levels := b.levels
	if len(levels) == 0 || len(levels[0]) != len(b.Digests) {
		levels = treeLevels(b.Digests)
	}
	return inclusionProof(levels, i)
}

// Open checks env and opens it, in this order, each step guarding the more
// expensive ones after it: version and field sizes (ErrVersion,
// ErrMalformed); both keys known, the sender's pinned for env.Tenant
// (ErrUnknownKey); ts within the window (ErrStale); the outer signature
// (ErrBadSignature); the nonce not seen (ErrReplay); HPKE decryption
// (ErrDecrypt); the batch's shape and limits (ErrMalformed, ErrTooLarge);
// the Merkle root and the inner signature (ErrMalformed, ErrBadSignature);
// every message's tenant (ErrTenantMismatch). It does not validate the
// messages themselves: see ParseMessage.
func (o *Opener) Open(ctx context.Context, env *Envelope) (*Batch, error) {
	if o.Keys == nil || o.Senders == nil || o.Replay == nil {
		return nil, errors.New("envelope: opener needs keys, senders and a replay cache")
	}
	if env == nil {
		return nil, fmt.Errorf("%w: no envelope", ErrMalformed)
	}
	if err := env.checkFields(); err != nil {
		return nil, err
	}
	rk := o.Keys.Key(env.KidRecipient)
	if rk == nil {
		return nil, fmt.Errorf("%w: kid_recipient %s", ErrUnknownKey, env.KidRecipient)
	}
	vk := o.Senders.Key(env.Tenant, env.KidSender)
	if vk == nil {
		return nil, fmt.Errorf("%w: kid_sender %s is not pinned for the tenant", ErrUnknownKey, env.KidSender)
	}

	now, window := time.Now(), o.Window
	if o.Now != nil {
		now = o.Now()
	}
	if window <= 0 {
		window = DefaultWindow
	}
	ts := time.Unix(env.TS, 0)
	if skew := now.Sub(ts); skew > window || skew < -window {
		return nil, fmt.Errorf("%w: ts is %s from now", ErrStale, skew.Truncate(time.Second))
	}

	h := env.header()
	if !vk.verify(outerSigned(h, env.Enc, env.CT), env.Sig) {
		return nil, fmt.Errorf("%w: outer", ErrBadSignature)
	}
	// Only now, with the signature checked, may the nonce take room in the
	// cache; it need outlive the envelope's window only.
	if err := o.Replay.Check(ctx, env.Tenant, env.Nonce, ts.Add(window)); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}

	r, err := suite.NewReceiver(rk.priv, info(h))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	opener, err := r.Setup(env.Enc)
	if err != nil {
		return nil, fmt.Errorf("%w: encapsulated key", ErrDecrypt)
	}
	pt, err := opener.Open(env.CT, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext", ErrDecrypt)
	}

	b, err := o.parseBatch(pt)
	if err != nil {
		return nil, err
	}
	b.Tenant, b.KidSender, b.Header = env.Tenant, env.KidSender, h
	if !vk.verify(innerSigned(h, b.Root), b.InnerSig) {
		return nil, fmt.Errorf("%w: batch", ErrBadSignature)
	}
	for i, m := range b.Messages {
		if err := checkTenant(m, env.Tenant); err != nil {
			return nil, fmt.Errorf("message %d: %w", i, err)
		}
	}
	return b, nil
}

// parseBatch decodes the plaintext, canonicalises and digests every
// message, and checks the root it carries against the digests.
func (o *Opener) parseBatch(pt []byte) (*Batch, error) {
	ms, err := readObject(pt)
	if err != nil {
		return nil, fmt.Errorf("%w: batch: %v", ErrMalformed, err)
	}
	var (
		raws      []json.RawMessage
		root, sig string
		have      int
	)
	for _, m := range ms {
		var err error
		switch m.name {
		case "messages":
			err = json.Unmarshal(m.value, &raws)
		case "root":
			err = json.Unmarshal(m.value, &root)
		case "sig":
			err = json.Unmarshal(m.value, &sig)
		default:
			return nil, fmt.Errorf("%w: batch: unknown field %s", ErrMalformed, fieldName(m.name))
		}
		if err != nil || string(m.value) == "null" {
			return nil, fmt.Errorf("%w: batch: field %q has the wrong type", ErrMalformed, m.name)
		}
		have++
	}
	if have != 3 {
		return nil, fmt.Errorf(`%w: batch needs "messages", "root" and "sig"`, ErrMalformed)
	}

	maxN, maxSize := o.MaxMessages, o.MaxMessageBytes
	if maxN <= 0 {
		maxN = DefaultMaxMessages
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxMessageBytes
	}
	switch {
	case len(raws) == 0:
		return nil, fmt.Errorf("%w: empty batch", ErrMalformed)
	case len(raws) > maxN:
		return nil, fmt.Errorf("%w: %d messages, at most %d", ErrTooLarge, len(raws), maxN)
	}
	b := &Batch{Messages: make([]json.RawMessage, len(raws)), Digests: make([][32]byte, len(raws))}
	for i, raw := range raws {
		if len(raw) > maxSize {
			return nil, fmt.Errorf("%w: message %d over %d bytes", ErrTooLarge, i, maxSize)
		}
		c, err := canonical(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: message %d: %v", ErrMalformed, i, err)
		}
		b.Messages[i], b.Digests[i] = c, sha256.Sum256(c)
	}
	b.levels = treeLevels(b.Digests)
	b.Root = b.levels[len(b.levels)-1][0]

	claimed, err := decodeB64(root)
	if err != nil || !bytes.Equal(claimed, b.Root[:]) {
		return nil, fmt.Errorf("%w: batch root does not match its messages", ErrMalformed)
	}
	if b.InnerSig, err = decodeB64(sig); err != nil {
		return nil, fmt.Errorf("%w: batch sig is not base64url without padding", ErrMalformed)
	}
	return b, nil
}
