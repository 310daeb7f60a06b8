package envelope_test

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindpost/blindpost/envelope"
)

// tlogTree is the same list of digests as a Go checksum-database log, an
// independent RFC 6962 implementation.
type tlogTree []tlog.Hash

func newTLogTree(t *testing.T, digests [][32]byte) tlogTree {
	var stored tlogTree
	for i, d := range digests {
		hs, err := tlog.StoredHashes(int64(i), d[:], stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	return stored
}

func (s tlogTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = s[x]
	}
	return out, nil
}

func testDigests(n int) [][32]byte {
	ds := make([][32]byte, n)
	for i := range ds {
		ds[i] = sha256.Sum256([]byte(fmt.Sprint("message ", i)))
	}
	return ds
}

// TestMerkleTreeIsRFC6962: roots and audit paths agree with x/mod's
// transparency-log code for every batch size up to 70.
func TestMerkleTreeIsRFC6962(t *testing.T) {
	for n := 1; n <= 70; n++ {
		ds := testDigests(n)
		tree := newTLogTree(t, ds)
		want, err := tlog.TreeHash(int64(n), tree)
		if err != nil {
			t.Fatal(err)
		}
		root := envelope.MerkleRoot(ds)
		if root != want {
			t.Fatalf("n=%d: root %x, want %x", n, root, want)
		}
		b := &envelope.Batch{Digests: ds, Root: root}
		for i := range n {
			proof := b.InclusionProof(i)
			wantProof, err := tlog.ProveRecord(int64(n), int64(i), tree)
			if err != nil {
				t.Fatal(err)
			}
			if len(proof) != len(wantProof) {
				t.Fatalf("n=%d i=%d: proof has %d hashes, want %d", n, i, len(proof), len(wantProof))
			}
			for k := range proof {
				if proof[k] != wantProof[k] {
					t.Fatalf("n=%d i=%d: proof[%d] differs", n, i, k)
				}
			}
			if !envelope.VerifyInclusion(root, n, i, ds[i], proof) {
				t.Fatalf("n=%d i=%d: proof does not verify", n, i)
			}
		}
	}
}

func TestInclusionProofRejectsWrongClaims(t *testing.T) {
	ds := testDigests(7)
	b := &envelope.Batch{Digests: ds, Root: envelope.MerkleRoot(ds)}
	proof := b.InclusionProof(3)
	other := sha256.Sum256([]byte("not in the batch"))
	tests := []struct {
		name   string
		n, i   int
		digest [32]byte
		proof  [][32]byte
	}{
		{"another digest", 7, 3, other, proof},
		{"another index", 7, 2, ds[3], proof},
		// (Sizes 5 to 8 share leaf 3's path shape, so only the root
		// tells them apart; 4 does not.)
		{"another size", 4, 3, ds[3], proof},
		{"index past the end", 7, 7, ds[3], proof},
		{"negative index", 7, -1, ds[3], proof},
		{"truncated proof", 7, 3, ds[3], proof[:len(proof)-1]},
		{"extended proof", 7, 3, ds[3], append(proof[:len(proof):len(proof)], other)},
		{"empty proof", 7, 3, ds[3], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if envelope.VerifyInclusion(b.Root, tt.n, tt.i, tt.digest, tt.proof) {
				t.Fatal("VerifyInclusion accepted a false claim")
			}
		})
	}
	if b.InclusionProof(7) != nil || b.InclusionProof(-1) != nil {
		t.Error("InclusionProof out of range is not nil")
	}
}

func TestDigestIsOverCanonicalJSON(t *testing.T) {
	a, err := envelope.Digest([]byte(`{"b": "\u00e9", "a": 1.0}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := envelope.Digest([]byte(`{"a":1,"b":"é"}`))
	if err != nil {
		t.Fatal(err)
	}
	if a != b || a != sha256.Sum256([]byte(`{"a":1,"b":"é"}`)) {
		t.Fatal("two encodings of one JSON value have different digests")
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"a":1,"a":2}`, `{"a":1`, "{\"a\":\"\xff\"}"} {
		if _, err := envelope.Digest([]byte(bad)); err == nil {
			t.Errorf("Digest(%q) succeeded", bad)
		}
	}
}
