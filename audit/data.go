package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/blindpost/blindpost/envelope"
)

// The Data of each kind of record. None carries personal data; codes are
// the stable error and status codes of the gateway's API.
//
// A decision record's Data is the policy decision itself, in OPA's
// decision-log shape (decision_id, path, input, result, revision,
// timestamp), passed through as the caller gives it: the log does not
// interpret policy, it keeps the evidence.

// (Fields are declared in the order of their JSON names, which is the
// canonical order, so the log need not sort them.)

// EnvelopeData is the Data of envelope_accepted and envelope_rejected.
type EnvelopeData struct {
	Code      string         `json:"code,omitempty"` // why it was rejected
	KidSender envelope.KeyID `json:"kid_sender,omitempty"`
	Messages  int            `json:"messages,omitempty"`
	Root      *Hash32        `json:"root,omitempty"` // the batch's Merkle root
}

// MessageData is the Data of message_accepted and message_rejected. Proof
// lets anyone holding the core's public key check, offline, that the core
// asked for the message with this digest.
type MessageData struct {
	Code       string       `json:"code,omitempty"`        // why it was rejected
	DecisionID string       `json:"decision_id,omitempty"` // the policy decision at acceptance
	Proof      MessageProof `json:"proof"`
}

// DeliveryData is the Data of a delivery record: one attempt's outcome.
// Code is the adapter's classification (e.g. "smtp_550"), never the
// remote server's reply text, which may quote the address.
type DeliveryData struct {
	Adapter    string `json:"adapter,omitempty"`
	Attempt    int    `json:"attempt,omitempty"`
	Channel    string `json:"channel,omitempty"`
	Code       string `json:"code,omitempty"`
	DecisionID string `json:"decision_id,omitempty"` // the policy decision at send time
	Status     string `json:"status"`                // sent, delivered, deferred, bounced, failed, expired, denied, …
}

// DecisionLog is a policy decision in OPA's decision-log shape, for the
// Data of a decision record. Input holds derived attributes and the
// subject's pseudonym only (DESIGN.md §6). A caller may pass OPA's own
// decision-log event instead: the log keeps whatever object it is given.
type DecisionLog struct {
	DecisionID string          `json:"decision_id"`
	Input      json.RawMessage `json:"input,omitempty"`
	Path       string          `json:"path"`
	Result     json.RawMessage `json:"result,omitempty"`
	Revision   string          `json:"revision"` // the policy bundle's revision
	Timestamp  time.Time       `json:"timestamp"`
}

// ErasureData is the Data of an erasure record; the record's Pseudonym
// names the subject whose vault record was destroyed.
type ErasureData struct {
	Brand string `json:"brand,omitempty"`
}

// OptOutData is the Data of an opt_out record: a player opted out through
// the gateway itself (the one-click unsubscribe link of a marketing email);
// the record names the player by pseudonym and the message that carried
// the link by its ids.
type OptOutData struct {
	Brand  string `json:"brand,omitempty"`
	Flag   string `json:"flag"`   // the opt-out flag set, e.g. core_is_email_disabled
	Source string `json:"source"` // e.g. list_unsubscribe (RFC 8058 one-click), unsubscribe_page
}

// Hash32 is a SHA-256 value, encoded in JSON as unpadded base64url like the
// envelope's byte fields.
type Hash32 [32]byte

func (h Hash32) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(h[:]))
}

func (h *Hash32) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("hash: not a string")
	}
	d, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(d) != len(h) {
		return errors.New("hash: not 32 bytes of base64url")
	}
	copy(h[:], d)
	return nil
}

// A MessageProof is the evidence that the core asked for a message: the
// message's digest (SHA-256 of its RFC 8785 form), its inclusion path in
// the batch's Merkle tree, and the core's signature over the batch header
// and root. It holds nothing of the message itself; the core, which keeps
// the message, can reveal it and anyone can recompute the digest.
type MessageProof struct {
	KidSender envelope.KeyID
	Header    []byte // canonical batch header bytes, as signed
	Root      [32]byte
	InnerSig  []byte
	Index     int // position of the message in the batch
	Size      int // number of messages in the batch
	Digest    [32]byte
	Proof     [][32]byte
}

// NewMessageProof returns the proof for message i of an opened batch.
func NewMessageProof(b *envelope.Batch, i int) MessageProof {
	return MessageProof{
		KidSender: b.KidSender,
		Header:    b.Header,
		Root:      b.Root,
		InnerSig:  b.InnerSig,
		Index:     i,
		Size:      len(b.Digests),
		Digest:    b.Digests[i],
		Proof:     b.InclusionProof(i),
	}
}

// ErrBadProof is returned by MessageProof.Verify.
var ErrBadProof = errors.New("audit: message proof does not verify")

// Verify checks that p.Digest is message p.Index of a batch whose root the
// core signed with core.
func (p MessageProof) Verify(core *envelope.VerifyingKey) error {
	if core == nil {
		return fmt.Errorf("%w: no key", ErrBadProof)
	}
	if p.KidSender != "" && p.KidSender != core.ID {
		return fmt.Errorf("%w: signed by key %s, not %s", ErrBadProof, p.KidSender, core.ID)
	}
	if !envelope.VerifyInclusion(p.Root, p.Size, p.Index, p.Digest, p.Proof) {
		return fmt.Errorf("%w: digest not included in the batch root", ErrBadProof)
	}
	if !envelope.VerifyBatchSignature(core, p.Header, p.Root, p.InnerSig) {
		return fmt.Errorf("%w: bad batch signature", ErrBadProof)
	}
	return nil
}

// messageProofJSON is MessageProof on the wire: byte strings as unpadded
// base64url, like the envelope.
type messageProofJSON struct {
	Digest    Hash32         `json:"digest"`
	Header    b64            `json:"header"`
	Index     int            `json:"index"`
	InnerSig  b64            `json:"inner_sig"`
	KidSender envelope.KeyID `json:"kid_sender"`
	Proof     []Hash32       `json:"proof"`
	Root      Hash32         `json:"root"`
	Size      int            `json:"size"`
}

func (p MessageProof) MarshalJSON() ([]byte, error) {
	w := messageProofJSON{
		KidSender: p.KidSender, Header: p.Header, Root: p.Root, InnerSig: p.InnerSig,
		Index: p.Index, Size: p.Size, Digest: p.Digest, Proof: make([]Hash32, len(p.Proof)),
	}
	for i, h := range p.Proof {
		w.Proof[i] = h
	}
	return json.Marshal(w)
}

func (p *MessageProof) UnmarshalJSON(b []byte) error {
	var w messageProofJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("message proof: %w", err)
	}
	*p = MessageProof{
		KidSender: w.KidSender, Header: w.Header, Root: w.Root, InnerSig: w.InnerSig,
		Index: w.Index, Size: w.Size, Digest: w.Digest, Proof: make([][32]byte, len(w.Proof)),
	}
	for i, h := range w.Proof {
		p.Proof[i] = h
	}
	return nil
}

type b64 []byte

func (b b64) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

func (b *b64) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("bytes: not a string")
	}
	d, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return errors.New("bytes: not base64url")
	}
	*b = d
	return nil
}
