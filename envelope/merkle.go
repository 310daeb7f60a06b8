package envelope

import (
	"crypto/sha256"
	"errors"

	"github.com/blindpost/blindpost/internal/jcs"
)

// Digest returns the digest of one message: the SHA-256 of its RFC 8785
// (JCS) canonical form. Two encodings of the same JSON value have the same
// digest; the gateway de-duplicates and the audit log proves by it.
func Digest(msg []byte) ([32]byte, error) {
	c, err := canonical(msg)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(c), nil
}

// canonical returns the JCS form of msg, which must be a JSON object. The
// error does not quote msg (jcs's own errors may).
func canonical(msg []byte) ([]byte, error) {
	c, err := jcs.Transform(msg)
	if err != nil {
		return nil, errors.New("not canonicalizable JSON (RFC 8785)")
	}
	if len(c) == 0 || c[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	return c, nil
}

// The batch tree is the Merkle tree of RFC 6962 §2.1 (as in Certificate
// Transparency) over the message digests, in batch order: a leaf hashes
// 0x00 ‖ digest and an interior node 0x01 ‖ left ‖ right, so a leaf can never
// pass for a node.

func leafHash(digest [32]byte) [32]byte {
	var b [33]byte
	copy(b[1:], digest[:])
	return sha256.Sum256(b[:])
}

func nodeHash(left, right [32]byte) [32]byte {
	var b [65]byte
	b[0] = 1
	copy(b[1:], left[:])
	copy(b[33:], right[:])
	return sha256.Sum256(b[:])
}

// treeLevels returns every level of the tree over digests, leaves first and
// the root last. Building bottom-up and carrying a level's last, unpaired
// node up unchanged gives exactly RFC 6962's tree, whose left subtree is
// always the largest power of two smaller than the whole.
func treeLevels(digests [][32]byte) [][][32]byte {
	level := make([][32]byte, len(digests))
	for i, d := range digests {
		level[i] = leafHash(d)
	}
	levels := [][][32]byte{level}
	for len(level) > 1 {
		next := make([][32]byte, (len(level)+1)/2)
		for i := range next {
			if 2*i+1 < len(level) {
				next[i] = nodeHash(level[2*i], level[2*i+1])
			} else {
				next[i] = level[2*i]
			}
		}
		levels = append(levels, next)
		level = next
	}
	return levels
}

// MerkleRoot returns the RFC 6962 Merkle tree hash of digests (for an empty
// list, the SHA-256 of nothing, though a batch is never empty).
func MerkleRoot(digests [][32]byte) [32]byte {
	if len(digests) == 0 {
		return sha256.Sum256(nil)
	}
	levels := treeLevels(digests)
	return levels[len(levels)-1][0]
}

// inclusionProof returns the RFC 6962 audit path of leaf i, bottom-up.
func inclusionProof(levels [][][32]byte, i int) [][32]byte {
	if len(levels) == 0 || i < 0 || i >= len(levels[0]) {
		return nil
	}
	proof := [][32]byte{}
	for _, level := range levels[:len(levels)-1] {
		if sib := i ^ 1; sib < len(level) {
			proof = append(proof, level[sib])
		}
		i >>= 1
	}
	return proof
}

// VerifyInclusion reports whether proof shows that digest is message i of a
// batch of n messages whose tree hash is root (RFC 9162 §2.1.3.2).
func VerifyInclusion(root [32]byte, n, i int, digest [32]byte, proof [][32]byte) bool {
	if i < 0 || n <= 0 || i >= n {
		return false
	}
	fn, sn := i, n-1
	r := leafHash(digest)
	for _, p := range proof {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	return sn == 0 && r == root
}
