package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/blindpost/blindpost/audit"
)

// signedLog writes a closed log of 12 records, a checkpoint signed after
// each, and returns it with the checkpoint of size 8 as a witness kept.
func signedLog(t *testing.T) (*gateway, []byte) {
	t.Helper()
	g := newGateway(t)
	l := g.open(t)
	mustAppend(t, g, l, 8)
	witness, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, g, l, 4)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return g, witness
}

func TestVerifyAcceptsAnHonestLog(t *testing.T) {
	g, witness := signedLog(t)
	rep, err := audit.Verify(g.dir, g.pub, origin, witness)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != 12 || rep.Checkpoints != 13 || rep.Unsigned != 0 || rep.Torn != 0 {
		t.Fatalf("report %+v, want 12 entries, 13 checkpoints, none unsigned", rep)
	}
	want := map[string]int{audit.KindEnvelopeAccepted: 3, audit.KindMessageAccepted: 3, audit.KindDecision: 3, audit.KindDelivery: 3}
	for k, n := range want {
		if rep.ByKind[k] != n {
			t.Errorf("ByKind[%s] = %d, want %d", k, rep.ByKind[k], n)
		}
	}
	latest := readFrames(t, filepath.Join(g.dir, "checkpoints"))[12]
	if rep.LatestRoot != mustParse(t, g, latest).Root {
		t.Error("LatestRoot is not the latest checkpoint's root")
	}
}

func TestVerifyReportsTheUnsignedTail(t *testing.T) {
	g := newGateway(t)
	l, err := audit.Open(g.dir, g.signer, audit.Options{Now: g.clock.Now, CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mustAppend(t, g, l, 3)
	// Verify reads the files while the gateway runs.
	rep, err := audit.Verify(g.dir, g.pub, origin, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Size != 3 || rep.Unsigned != 3 {
		t.Fatalf("report %+v, want 3 entries, all unsigned", rep)
	}
}

// Each case edits the files on disk the way an operator with a script
// would, and Verify must name what was done.
func TestVerifyDetectsTampering(t *testing.T) {
	entries := func(g *gateway) string { return filepath.Join(g.dir, "entries") }
	checkpoints := func(g *gateway) string { return filepath.Join(g.dir, "checkpoints") }
	editEntries := func(t *testing.T, g *gateway, edit func([][]byte) [][]byte) {
		writeFrames(t, entries(g), edit(readFrames(t, entries(g))))
	}
	editCheckpoints := func(t *testing.T, g *gateway, edit func([][]byte) [][]byte) {
		writeFrames(t, checkpoints(g), edit(readFrames(t, checkpoints(g))))
	}
	// record returns the canonical bytes of a made-up record.
	record := func(t *testing.T, index int64, at time.Time) []byte {
		b, err := audit.Record{Index: index, Time: at, Kind: audit.KindErasure, Tenant: "tenant-a", Pseudonym: "ps_1"}.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	timeOf := func(t *testing.T, g *gateway, i int) time.Time {
		r, _ := audit.OpenReader(g.dir)
		for rec, err := range r.Records() {
			if err != nil {
				t.Fatal(err)
			}
			if rec.Index == int64(i) {
				return rec.Time
			}
		}
		t.Fatalf("no record %d", i)
		return time.Time{}
	}

	for _, tc := range []struct {
		name        string
		tamper      func(t *testing.T, g *gateway)
		withWitness bool
		want        error
	}{
		{
			name: "deleted entry",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte { return append(f[:4], f[5:]...) })
			},
			want: audit.ErrDeleted,
		},
		{
			name: "altered entry",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte {
					f[3] = bytes.Replace(f[3], []byte(`"tenant-a"`), []byte(`"tenant-b"`), 1)
					return f
				})
			},
			want: audit.ErrAltered,
		},
		{
			name: "altered entry not re-length-prefixed",
			tamper: func(t *testing.T, g *gateway) {
				b, _ := os.ReadFile(entries(g))
				b = bytes.Replace(b, []byte(`"msg-3"`), []byte(`"msg-33"`), 1)
				os.WriteFile(entries(g), b, 0o600)
			},
			want: audit.ErrAltered,
		},
		{
			name: "altered entry re-encoded (not canonical)",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte {
					f[3] = bytes.Replace(f[3], []byte(`"kind":`), []byte(`"kind": `), 1)
					return f
				})
			},
			want: audit.ErrAltered,
		},
		{
			name: "reordered entries",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte { f[5], f[6] = f[6], f[5]; return f })
			},
			want: audit.ErrReordered,
		},
		{
			name: "entry moved to the end",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte { return append(append(f[:2:2], f[3:]...), f[2]) })
			},
			want: audit.ErrReordered,
		},
		{
			name: "entry appended out of order (repeated index)",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte { return append(f, f[3]) })
			},
			want: audit.ErrOutOfOrder,
		},
		{
			name: "entry appended out of order (earlier time)",
			tamper: func(t *testing.T, g *gateway) {
				at := timeOf(t, g, 11).Add(-time.Minute)
				editEntries(t, g, func(f [][]byte) [][]byte { return append(f, record(t, 12, at)) })
			},
			want: audit.ErrOutOfOrder,
		},
		{
			name: "truncated log",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte { return f[:9] })
			},
			want: audit.ErrTruncated,
		},
		{
			name: "truncated log cut mid-entry",
			tamper: func(t *testing.T, g *gateway) {
				fi, _ := os.Stat(entries(g))
				os.Truncate(entries(g), fi.Size()-10)
			},
			want: audit.ErrTruncated,
		},
		{
			name: "truncated log and checkpoints, caught by the witness",
			tamper: func(t *testing.T, g *gateway) {
				editEntries(t, g, func(f [][]byte) [][]byte { return f[:6] })
				editCheckpoints(t, g, func(f [][]byte) [][]byte { return f[:7] }) // sizes 0..6
				if _, err := audit.Verify(g.dir, g.pub, origin, nil); err != nil {
					t.Fatalf("the cut log does not verify on its own: %v", err)
				}
			},
			withWitness: true,
			want:        audit.ErrTruncated,
		},
		{
			name: "all checkpoints deleted",
			tamper: func(t *testing.T, g *gateway) {
				os.WriteFile(checkpoints(g), nil, 0o600)
			},
			want: audit.ErrTruncated,
		},
		{
			name: "forged checkpoint signed by another key",
			tamper: func(t *testing.T, g *gateway) {
				_, other, _ := ed25519.GenerateKey(nil)
				s, _ := audit.NewSigner(origin, other)
				editCheckpoints(t, g, func(f [][]byte) [][]byte {
					c := mustParse(t, g, f[len(f)-1])
					forged, err := note.Sign(&note.Note{Text: string(c.Body())}, s)
					if err != nil {
						t.Fatal(err)
					}
					return append(f, forged)
				})
			},
			want: audit.ErrForgedCheckpoint,
		},
		{
			name: "checkpoint with an edited size",
			tamper: func(t *testing.T, g *gateway) {
				editCheckpoints(t, g, func(f [][]byte) [][]byte {
					last := f[len(f)-1]
					f[len(f)-1] = bytes.Replace(last, []byte("\n12\n"), []byte("\n9\n"), 1)
					return f
				})
			},
			want: audit.ErrForgedCheckpoint,
		},
		{
			name: "checkpoint with an edited root",
			tamper: func(t *testing.T, g *gateway) {
				editCheckpoints(t, g, func(f [][]byte) [][]byte {
					last := f[len(f)-1]
					lines := strings.SplitN(string(last), "\n", 4)
					root := []byte(lines[2])
					root[0] ^= 1
					lines[2] = string(root)
					f[len(f)-1] = []byte(strings.Join(lines, "\n"))
					return f
				})
			},
			want: audit.ErrForgedCheckpoint,
		},
		{
			name: "log rebuilt with a different history, caught by the witness",
			tamper: func(t *testing.T, g *gateway) {
				// The operator rewrites history: a new log, other records,
				// every checkpoint signed again with the same key. The
				// directory alone is consistent; only the witness shows it.
				os.RemoveAll(g.dir)
				l := g.open(t)
				mustAppend(t, g, l, 12)
				l.Close()
				if _, err := audit.Verify(g.dir, g.pub, origin, nil); err != nil {
					t.Fatalf("the rebuilt log does not verify on its own: %v", err)
				}
			},
			withWitness: true,
			want:        audit.ErrInconsistent,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, witness := signedLog(t)
			if _, err := audit.Verify(g.dir, g.pub, origin, witness); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			tc.tamper(t, g)
			var since []byte
			if tc.withWitness {
				since = witness
			}
			_, err := audit.Verify(g.dir, g.pub, origin, since)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestVerifyRefusesAForgedWitnessCheckpoint(t *testing.T) {
	g, witness := signedLog(t)
	edited := bytes.Replace(witness, []byte("\n8\n"), []byte("\n"+strconv.Itoa(7)+"\n"), 1)
	if _, err := audit.Verify(g.dir, g.pub, origin, edited); !errors.Is(err, audit.ErrForgedCheckpoint) {
		t.Fatalf("Verify = %v, want ErrForgedCheckpoint", err)
	}
}

func TestVerifyRefusesAnotherOrigin(t *testing.T) {
	g, _ := signedLog(t)
	if _, err := audit.Verify(g.dir, g.pub, "other.example.com/log", nil); !errors.Is(err, audit.ErrForgedCheckpoint) {
		t.Fatalf("Verify = %v, want ErrForgedCheckpoint", err)
	}
}

// Many witnessed checkpoints are checked in one pass: all consistent
// passes; one from a rewritten history among good ones is named.
func TestVerifyWitnessedManyCheckpointsInOnePass(t *testing.T) {
	g, witness := signedLog(t)
	l := g.open(t)
	var cps [][]byte
	for range 3 {
		mustAppend(t, g, l, 2)
		cp, err := l.Checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	l.Close()
	all := append([][]byte{witness}, cps...)
	if _, err := audit.VerifyWitnessed(g.dir, g.pub, origin, all...); err != nil {
		t.Fatalf("consistent witnesses: %v", err)
	}
	// A checkpoint of another history, signed with the same key.
	other := &gateway{dir: t.TempDir(), pub: g.pub, priv: g.priv, signer: g.signer, clock: g.clock}
	ol := other.open(t)
	mustAppend(t, other, ol, 9)
	foreign, err := ol.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ol.Close()
	_, err = audit.VerifyWitnessed(g.dir, g.pub, origin, cps[0], foreign, cps[1])
	if !errors.Is(err, audit.ErrInconsistent) || !strings.Contains(err.Error(), "witnessed checkpoint 2") {
		t.Fatalf("VerifyWitnessed = %v, want ErrInconsistent naming checkpoint 2", err)
	}
}
