package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindpost/blindpost/audit"
)

func TestCheckpointBodyIsC2SP(t *testing.T) {
	root := tlog.Hash(sha256.Sum256([]byte("root")))
	c := audit.Checkpoint{Origin: origin, Size: 42, Root: root}
	want := origin + "\n42\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
	if got := string(c.Body()); got != want {
		t.Fatalf("body %q, want %q", got, want)
	}
}

// The signer's key hash is the one the note format defines, so tools that
// know nothing of blindpost verify its checkpoints from the verifier key.
func TestCheckpointVerifiesWithStandardNoteTooling(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	cp := mustAppend(t, g, l, 3)
	l.Close()

	h := sha256.Sum256(append([]byte(origin+"\n\x01"), g.pub...))
	if got, want := g.signer.KeyHash(), binary.BigEndian.Uint32(h[:4]); got != want {
		t.Fatalf("key hash %08x, want %08x", got, want)
	}
	vkey, err := audit.VerifierKey(origin, g.pub)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(vkey, fmt.Sprintf("%s+%08x+", origin, g.signer.KeyHash())) {
		t.Fatalf("verifier key %q does not carry the key hash", vkey)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cp, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open with the standard verifier: %v", err)
	}
	c, err := audit.ParseCheckpoint(cp, v)
	if err != nil {
		t.Fatal(err)
	}
	if n.Text != string(c.Body()) || c.Size != 3 || c.Origin != origin {
		t.Fatalf("parsed %+v from %q", c, n.Text)
	}
	// And the other way round: a standard signer's notes pass ours.
	skey, _, err := note.GenerateKey(nil, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	if _, err := note.Sign(&note.Note{Text: string(c.Body())}, s); err != nil {
		t.Fatal(err)
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	s, _ := audit.NewSigner(origin, priv)
	v, _ := audit.NewVerifier(origin, pub)
	sign := func(s note.Signer, text string) []byte {
		b, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := audit.Checkpoint{Origin: origin, Size: 7, Root: tlog.Hash{1}}
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	other, _ := audit.NewSigner(origin, otherPriv)
	otherOrigin, _ := audit.NewSigner("other.example.com/log", priv)
	if _, err := audit.ParseCheckpoint(sign(s, string(good.Body())), v); err != nil {
		t.Fatalf("good checkpoint: %v", err)
	}
	for _, tc := range []struct {
		name string
		cp   []byte
	}{
		{"signed by another key", sign(other, string(good.Body()))},
		{"signed for another origin", sign(otherOrigin, string(good.Body()))},
		{"edited size", bytes.Replace(sign(s, string(good.Body())), []byte("\n7\n"), []byte("\n8\n"), 1)},
		{"size with a leading zero", sign(s, origin+"\n07\n"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")},
		{"negative size", sign(s, origin+"\n-1\n"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")},
		{"short root", sign(s, origin+"\n7\n"+base64.StdEncoding.EncodeToString(make([]byte, 31))+"\n")},
		{"missing root", sign(s, origin+"\n7\n")},
		{"body origin differs from key name", sign(s, "other.example.com/log\n7\n"+base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n")},
		{"not a note", []byte("hello\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := audit.ParseCheckpoint(tc.cp, v); !errors.Is(err, audit.ErrForgedCheckpoint) {
				t.Fatalf("ParseCheckpoint = %v, want ErrForgedCheckpoint", err)
			}
		})
	}
}

func TestNewSignerRejectsBadNames(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	for _, name := range []string{"", "has space", "has+plus"} {
		if _, err := audit.NewSigner(name, priv); err == nil {
			t.Errorf("NewSigner(%q) accepted a name notes cannot carry", name)
		}
	}
}
