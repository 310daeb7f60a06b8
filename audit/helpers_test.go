package audit_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindpost/blindpost/audit"
)

const origin = "gateway.example.com/audit"

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// gateway is a log directory and the key that signs it.
type gateway struct {
	dir    string
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
	signer note.Signer
	clock  *clock
}

func newGateway(t testing.TB) *gateway {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := audit.NewSigner(origin, priv)
	if err != nil {
		t.Fatal(err)
	}
	return &gateway{dir: filepath.Join(t.TempDir(), "audit"), pub: pub, priv: priv, signer: s, clock: newClock()}
}

// open opens the log, signing a checkpoint after every group commit.
func (g *gateway) open(t testing.TB) *audit.Log {
	t.Helper()
	l, err := audit.Open(g.dir, g.signer, audit.Options{Now: g.clock.Now, CheckpointEvery: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// testLogger logs to t, so a failing test shows what recovery did.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// mustAppend appends n records of assorted kinds, one call each, moving
// the clock one second per record, and returns the log's checkpoint.
func mustAppend(t testing.TB, g *gateway, l *audit.Log, n int) []byte {
	t.Helper()
	kinds := []string{audit.KindEnvelopeAccepted, audit.KindMessageAccepted, audit.KindDecision, audit.KindDelivery}
	for i := 0; i < n; i++ {
		g.clock.Advance(time.Second)
		r, err := audit.NewRecord(kinds[i%len(kinds)], "tenant-a", audit.DeliveryData{Status: "sent", Attempt: i})
		if err != nil {
			t.Fatal(err)
		}
		r.MsgID = fmt.Sprintf("msg-%d", i)
		r.ExtID = fmt.Sprintf("gw-%d", i)
		r.Pseudonym = "ps_7f3a9c"
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	cp, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	return cp
}

// readFrames reads a file of length-prefixed frames, the way an operator's
// script would.
func readFrames(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for len(b) > 0 {
		n := binary.BigEndian.Uint32(b)
		frames = append(frames, b[4:4+n])
		b = b[4+n:]
	}
	return frames
}

func writeFrames(t testing.TB, path string, frames [][]byte) {
	t.Helper()
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// mth is RFC 6962's Merkle tree hash, written out from the RFC, to check
// the log against an implementation other than tlog's.
func mth(leaves [][]byte) tlog.Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := mth(leaves[:k]), mth(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func mustParse(t testing.TB, g *gateway, cp []byte) audit.Checkpoint {
	t.Helper()
	v, err := audit.NewVerifier(origin, g.pub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.ParseCheckpoint(cp, v)
	if err != nil {
		t.Fatalf("ParseCheckpoint: %v", err)
	}
	return c
}
