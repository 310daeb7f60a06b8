package audit_test

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindpost/blindpost/audit"
)

func TestConcurrentAppendsGetDistinctConsecutiveIndexes(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	defer l.Close()
	const callers, calls, per = 8, 20, 3
	var mu sync.Mutex
	seen := make(map[int64]bool)
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				recs := make([]audit.Record, per)
				for j := range recs {
					recs[j] = audit.Record{Kind: audit.KindDecision, Tenant: "tenant-a", Data: json.RawMessage(`{"decision_id":"d"}`)}
				}
				first, err := l.Append(context.Background(), recs...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for j := int64(0); j < per; j++ {
					if seen[first+j] {
						t.Errorf("index %d given twice", first+j)
					}
					seen[first+j] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if want := int64(callers * calls * per); l.Size() != want || int64(len(seen)) != want {
		t.Fatalf("size %d, %d indexes, want %d", l.Size(), len(seen), want)
	}
	for i := int64(0); i < l.Size(); i++ {
		b, err := l.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		var r audit.Record
		if err := json.Unmarshal(b, &r); err != nil || r.Index != i {
			t.Fatalf("entry %d decodes to index %d (%v)", i, r.Index, err)
		}
	}
}

func TestRecordTimesNeverGoBackwards(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 2)
	g.clock.Advance(-time.Hour) // the wall clock is set back
	mustAppend(t, g, l, 1)
	l.Close()
	r, _ := audit.OpenReader(g.dir)
	var prev time.Time
	for rec, err := range r.Records() {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Time.Before(prev) {
			t.Fatalf("record %d is dated %v, before %v", rec.Index, rec.Time, prev)
		}
		prev = rec.Time
	}
	if _, err := audit.Verify(g.dir, g.pub, origin, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAppendRejectsInvalidRecords(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	defer l.Close()
	for _, tc := range []struct {
		name string
		rec  audit.Record
	}{
		{"unknown kind", audit.Record{Kind: "email_sent", Tenant: "t"}},
		{"no tenant", audit.Record{Kind: audit.KindErasure}},
		{"control character in id", audit.Record{Kind: audit.KindErasure, Tenant: "t", MsgID: "a\nb"}},
		{"data not an object", audit.Record{Kind: audit.KindDecision, Tenant: "t", Data: json.RawMessage(`[1]`)}},
		{"data not JSON", audit.Record{Kind: audit.KindDecision, Tenant: "t", Data: json.RawMessage(`{"a":`)}},
		{"data too long", audit.Record{Kind: audit.KindDecision, Tenant: "t", Data: json.RawMessage(`{"a":"` + string(make([]byte, audit.MaxDataLen)) + `"}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := l.Append(context.Background(), tc.rec); !errors.Is(err, audit.ErrInvalidRecord) {
				t.Fatalf("Append = %v, want ErrInvalidRecord", err)
			}
		})
	}
	if l.Size() != 0 {
		t.Fatalf("size %d after invalid appends", l.Size())
	}
}

func TestAppendAfterCloseFails(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := l.Append(context.Background(), audit.Record{Kind: audit.KindErasure, Tenant: "t"})
	if !errors.Is(err, audit.ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestSecondWriterIsRefused(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	defer l.Close()
	if _, err := audit.Open(g.dir, g.signer, audit.Options{}); err == nil {
		t.Fatal("a second Open of a log in use succeeded")
	}
}

func TestOriginMustBeTheSignersName(t *testing.T) {
	g := newGateway(t)
	if _, err := audit.Open(g.dir, g.signer, audit.Options{Origin: "other.example.com/log"}); err == nil {
		t.Fatal("Open accepted an origin that is not the signer's key name")
	}
}

func TestReopenContinuesTheLog(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 5)
	l.Close()
	l = g.open(t)
	if l.Size() != 5 {
		t.Fatalf("reopened size %d, want 5", l.Size())
	}
	mustAppend(t, g, l, 3)
	l.Close()
	rep, err := audit.Verify(g.dir, g.pub, origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != 8 || rep.Unsigned != 0 {
		t.Fatalf("report %+v, want 8 entries all signed", rep)
	}
}

// A crash can leave the last group commit half written; those bytes were
// never acknowledged (Append returns after fsync) and Open removes them.
// The hashes and index files are not fsynced on every commit, so they may
// lag; Open recomputes them from the entries after the latest checkpoint.
func TestCrashRecoveryDropsATornWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		torn func(frame []byte) []byte
	}{
		{"cut inside the length", func(f []byte) []byte { return f[:2] }},
		{"cut inside the record", func(f []byte) []byte { return f[:len(f)/2] }},
		{"zeros never written", func(f []byte) []byte { return make([]byte, 300) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t)
			ctx := context.Background()
			l, err := audit.Open(g.dir, g.signer, audit.Options{Now: g.clock.Now, CheckpointEvery: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			mustAppend(t, g, l, 6)
			g.clock.Advance(time.Hour)
			cp, _ := l.Checkpoint(ctx)
			if c := mustParse(t, g, cp); c.Size != 6 {
				t.Fatalf("checkpoint of size %d, want 6", c.Size)
			}
			mustAppend(t, g, l, 2) // acknowledged, not yet signed
			next, _ := l.Entry(7)
			simulateCrash(t, g, l)

			f, err := os.OpenFile(filepath.Join(g.dir, "entries"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.torn(append(binary.BigEndian.AppendUint32(nil, uint32(len(next))), next...)))
			f.Close()
			// The derived files lost what was not yet synced.
			for name, lost := range map[string]int64{"hashes": 40, "index": 8} {
				p := filepath.Join(g.dir, name)
				fi, _ := os.Stat(p)
				os.Truncate(p, fi.Size()-lost)
			}

			l = g.open(t)
			if l.Size() != 8 {
				t.Fatalf("recovered size %d, want the 8 acknowledged records", l.Size())
			}
			mustAppend(t, g, l, 1)
			l.Close()
			rep, err := audit.Verify(g.dir, g.pub, origin, cp)
			if err != nil {
				t.Fatalf("Verify after recovery: %v", err)
			}
			if rep.Size != 9 || rep.Torn != 0 || rep.Unsigned != 0 {
				t.Fatalf("report %+v, want 9 entries, all signed, nothing torn", rep)
			}
		})
	}
}

// simulateCrash stops l leaving its files as a kill -9 after the last
// acknowledged append would: Close's final checkpoint is undone by
// restoring the files copied before it.
func simulateCrash(t *testing.T, g *gateway, l *audit.Log) {
	t.Helper()
	saved := map[string][]byte{}
	for _, name := range []string{"entries", "hashes", "index", "checkpoints"} {
		b, err := os.ReadFile(filepath.Join(g.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		saved[name] = b
	}
	l.Close()
	for name, b := range saved {
		if err := os.WriteFile(filepath.Join(g.dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRebuildsLostHashesAndIndex(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 11)
	l.Close()
	os.Remove(filepath.Join(g.dir, "hashes"))
	os.WriteFile(filepath.Join(g.dir, "index"), make([]byte, 88), 0o600) // garbage
	l = g.open(t)
	defer l.Close()
	cp := mustParse(t, g, mustAppend(t, g, l, 0))
	for i := int64(0); i < cp.Size; i++ {
		p, err := l.InclusionProof(i, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		e, err := l.Entry(i)
		if err != nil {
			t.Fatal(err)
		}
		if err := audit.CheckInclusion(p, cp, i, e); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

func TestOpenRefusesALogBelowItsCheckpoint(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 5)
	l.Close()
	frames := readFrames(t, filepath.Join(g.dir, "entries"))
	writeFrames(t, filepath.Join(g.dir, "entries"), frames[:3])
	if _, err := audit.Open(g.dir, g.signer, audit.Options{}); !errors.Is(err, audit.ErrTruncated) {
		t.Fatalf("Open of a truncated log = %v, want ErrTruncated", err)
	}
}

func TestOpenRefusesAnAlteredLogWhenRebuilding(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 5)
	l.Close()
	frames := readFrames(t, filepath.Join(g.dir, "entries"))
	frames[1] = []byte(string(frames[1][:len(frames[1])-2]) + `8"}`) // a different time
	writeFrames(t, filepath.Join(g.dir, "entries"), frames)
	os.Remove(filepath.Join(g.dir, "hashes"))
	if _, err := audit.Open(g.dir, g.signer, audit.Options{}); !errors.Is(err, audit.ErrAltered) {
		t.Fatalf("Open = %v, want ErrAltered", err)
	}
}

func TestCheckpointIsCachedBetweenSignings(t *testing.T) {
	g := newGateway(t)
	l, err := audit.Open(g.dir, g.signer, audit.Options{Now: g.clock.Now, CheckpointEvery: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, _ := l.Checkpoint(ctx)
	if c := mustParse(t, g, first); c.Size != 0 || c.Root != tlog.Hash(emptyRoot()) {
		t.Fatalf("new log's checkpoint %+v, want the empty tree", c)
	}
	l.Append(ctx, audit.Record{Kind: audit.KindErasure, Tenant: "t", Pseudonym: "ps_1"})
	if cp, _ := l.Checkpoint(ctx); string(cp) != string(first) {
		t.Fatal("signed a new checkpoint before CheckpointEvery passed")
	}
	g.clock.Advance(time.Minute)
	second, _ := l.Checkpoint(ctx)
	if c := mustParse(t, g, second); c.Size != 1 {
		t.Fatalf("checkpoint after a minute signs size %d, want 1", c.Size)
	}
	g.clock.Advance(time.Hour)
	if cp, _ := l.Checkpoint(ctx); string(cp) != string(second) {
		t.Fatal("signed a new checkpoint for a tree that did not grow")
	}
	l.Append(ctx, audit.Record{Kind: audit.KindErasure, Tenant: "t", Pseudonym: "ps_2"})
	l.Close() // signs the tail
	rep, err := audit.Verify(g.dir, g.pub, origin, first)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checkpoints != 3 || rep.Unsigned != 0 {
		t.Fatalf("report %+v, want 3 checkpoints and no unsigned tail", rep)
	}
}

func TestProofsCheckWithTlog(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	defer l.Close()
	const n = 37
	var cps []audit.Checkpoint
	var leaves [][]byte
	for i := 0; i < n; i++ {
		cps = append(cps, mustParse(t, g, mustAppend(t, g, l, 1)))
		e, err := l.Entry(int64(i))
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, e)
		if got, want := cps[i].Root, mth(leaves); got != want {
			t.Fatalf("root of size %d differs from RFC 6962's tree hash", i+1)
		}
	}
	for _, c := range cps {
		for i := int64(0); i < c.Size; i++ {
			p, err := l.InclusionProof(i, c.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckRecord(p, c.Size, c.Root, i, tlog.RecordHash(leaves[i])); err != nil {
				t.Fatalf("tlog rejects inclusion of %d in %d: %v", i, c.Size, err)
			}
			if err := audit.CheckInclusion(p, c, i, leaves[i]); err != nil {
				t.Fatal(err)
			}
			if i > 0 && audit.CheckInclusion(p, c, i, leaves[i-1]) == nil {
				t.Fatalf("proof for %d accepts record %d", i, i-1)
			}
		}
		for _, old := range cps {
			if old.Size > c.Size {
				continue
			}
			p, err := l.ConsistencyProof(old.Size, c.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p, c.Size, c.Root, old.Size, old.Root); err != nil {
				t.Fatalf("tlog rejects consistency %d -> %d: %v", old.Size, c.Size, err)
			}
			if err := audit.CheckConsistency(p, old, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	forged := cps[10]
	forged.Root[0] ^= 1
	p, _ := l.ConsistencyProof(11, 30)
	if err := audit.CheckConsistency(p, forged, cps[29]); !errors.Is(err, audit.ErrInconsistent) {
		t.Fatalf("CheckConsistency of a forged old root = %v, want ErrInconsistent", err)
	}
	if _, err := l.InclusionProof(n, n+1); err == nil {
		t.Fatal("proof for a tree larger than the log")
	}
}

func emptyRoot() [32]byte { return mth(nil) }

// Verify holds a log to one key, so a gateway started with another key
// must not sign on top of the old history.
func TestOpenRefusesAnotherSigningKey(t *testing.T) {
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 2)
	l.Close()
	_, priv, _ := ed25519.GenerateKey(nil)
	other, _ := audit.NewSigner(origin, priv)
	if l, err := audit.Open(g.dir, other, audit.Options{}); err == nil {
		l.Close()
		t.Fatal("Open accepted a signer whose key did not sign the log's checkpoints")
	}
}
