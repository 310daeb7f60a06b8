package audit_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/blindpost/blindpost/audit"
)

func openWitness(t *testing.T, path string, pub ed25519.PublicKey) *audit.Witness {
	t.Helper()
	w, err := audit.OpenWitness(path, pub, origin)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWitnessKeepsEveryNewCheckpoint(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	defer l.Close()
	path := filepath.Join(t.TempDir(), "core", "witness")
	w := openWitness(t, path, g.pub)
	var seen [][]byte
	for i := 0; i < 5; i++ {
		cp := mustAppend(t, g, l, 2)
		for j := 0; j < 3; j++ { // every callback carries it; stored once
			if err := w.Observe(cp); err != nil {
				t.Fatal(err)
			}
		}
		seen = append(seen, cp)
	}
	if err := w.Observe(seen[1]); err != nil { // a late, retried callback
		t.Fatalf("an old checkpoint already witnessed: %v", err)
	}
	w.Close()

	w = openWitness(t, path, g.pub) // durable across restarts
	defer w.Close()
	all, err := w.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(seen) {
		t.Fatalf("witness holds %d checkpoints, want %d", len(all), len(seen))
	}
	for i := range all {
		if !bytes.Equal(all[i], seen[i]) {
			t.Fatalf("checkpoint %d differs", i)
		}
	}
	latest, c := w.Latest()
	if !bytes.Equal(latest, seen[4]) || c.Size != 10 {
		t.Fatalf("Latest = size %d", c.Size)
	}
	// Any witness copy verifies the log.
	if _, err := audit.Verify(g.dir, g.pub, origin, all[2]); err != nil {
		t.Fatal(err)
	}
}

func TestWitnessRefusesARollback(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	early := mustAppend(t, g, l, 3)
	late := mustAppend(t, g, l, 3)
	l.Close()
	w := openWitness(t, filepath.Join(t.TempDir(), "witness"), g.pub)
	defer w.Close()
	if err := w.Observe(late); err != nil {
		t.Fatal(err)
	}
	// early was signed but never witnessed: shown now, it rolls back.
	if err := w.Observe(early); !errors.Is(err, audit.ErrRollback) {
		t.Fatalf("Observe(smaller) = %v, want ErrRollback", err)
	}
	if all, _ := w.All(); len(all) != 1 {
		t.Fatalf("a refused checkpoint was stored")
	}
}

func TestWitnessRefusesAFork(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	honest := mustAppend(t, g, l, 4)
	l.Close()
	// The same key signs another tree of the same size.
	forkDir := filepath.Join(t.TempDir(), "fork")
	fork, err := audit.Open(forkDir, g.signer, audit.Options{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	forked := mustAppend(t, g, fork, 4)
	fork.Close()

	w := openWitness(t, filepath.Join(t.TempDir(), "witness"), g.pub)
	defer w.Close()
	if err := w.Observe(honest); err != nil {
		t.Fatal(err)
	}
	if err := w.Observe(forked); !errors.Is(err, audit.ErrFork) {
		t.Fatalf("Observe(same size, other root) = %v, want ErrFork", err)
	}
}

func TestWitnessRefusesAForgedCheckpoint(t *testing.T) {
	g := newGateway(t)
	_, other, _ := ed25519.GenerateKey(nil)
	s, _ := audit.NewSigner(origin, other)
	forged, err := note.Sign(&note.Note{Text: string(audit.Checkpoint{Origin: origin, Size: 1}.Body())}, s)
	if err != nil {
		t.Fatal(err)
	}
	w := openWitness(t, filepath.Join(t.TempDir(), "witness"), g.pub)
	defer w.Close()
	if err := w.Observe(forged); !errors.Is(err, audit.ErrForgedCheckpoint) {
		t.Fatalf("Observe(forged) = %v, want ErrForgedCheckpoint", err)
	}
	if cp, _ := w.Latest(); cp != nil {
		t.Fatal("a forged checkpoint became the latest")
	}
}

func TestWitnessRecoversFromATornWrite(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	cp := mustAppend(t, g, l, 1)
	l.Close()
	path := filepath.Join(t.TempDir(), "witness")
	w := openWitness(t, path, g.pub)
	if err := w.Observe(cp); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{0, 0, 0, 200, 'x'})
	f.Close()
	w = openWitness(t, path, g.pub)
	defer w.Close()
	if latest, _ := w.Latest(); !bytes.Equal(latest, cp) {
		t.Fatal("lost the witnessed checkpoint")
	}
	if _, err := w.All(); err != nil {
		t.Fatal(err)
	}
}
