package policy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
)

// Decision ids must be unique, and must not tell anyone how many decisions
// the gateway has made: ids travel to the core in status callbacks, and a
// plain counter would let one tenant watch the volume of every other.
//
// So an id is a 64-bit counter encrypted with AES under a key drawn at
// start-up. AES is a permutation, so distinct counters give distinct ids
// within a process; across processes, keys differ and collisions are as
// unlikely as between random 128-bit values. It costs one block
// encryption instead of a call into the system's random source per
// decision.
var (
	idCipher  = newIDCipher()
	idCounter atomic.Uint64
)

func newIDCipher() cipher.Block {
	var key [16]byte
	rand.Read(key[:]) // never fails (crypto/rand, Go 1.24+)
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	return b
}

// newID returns a fresh decision id: 16 bytes in hex.
func newID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[8:], idCounter.Add(1))
	idCipher.Encrypt(b[:], b[:])
	return hex.EncodeToString(b[:])
}
