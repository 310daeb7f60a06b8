package audit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/tlog"
)

// File names inside a log directory.
const (
	entriesFile     = "entries"
	hashesFile      = "hashes"
	indexFile       = "index"
	checkpointsFile = "checkpoints"
	lockFile        = "lock"
)

// Frames: every entry and every checkpoint is stored as a 4-byte big-endian
// length and that many bytes. A crash can cut the last frame short; any
// other damage is corruption.

const frameHeader = 4

var (
	// errTorn is an incomplete last frame: a write cut short.
	errTorn = errors.New("incomplete last frame")
	// errBadFrame is a frame whose length cannot be right.
	errBadFrame = errors.New("bad frame length")
)

// frameReader reads frames from a file front to back.
type frameReader struct {
	r   *bufio.Reader
	off int64 // offset of the next frame
	max int
}

func newFrameReader(r io.Reader, off int64, max int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 1<<20), off: off, max: max}
}

// next returns the next frame's payload, valid until the following call.
// It returns io.EOF at a clean end, errTorn if the file ends inside the
// frame, and errBadFrame if the length is zero or over the maximum.
func (fr *frameReader) next(buf []byte) ([]byte, error) {
	var h [frameHeader]byte
	n, err := io.ReadFull(fr.r, h[:])
	switch {
	case err == io.EOF:
		return nil, io.EOF
	case err != nil && n > 0:
		return nil, errTorn
	case err != nil:
		return nil, err
	}
	size := binary.BigEndian.Uint32(h[:])
	if size == 0 || size > uint32(fr.max) {
		return nil, errBadFrame
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(fr.r, buf); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, errTorn
		}
		return nil, err
	}
	fr.off += frameHeader + int64(size)
	return buf, nil
}

// appendFrame appends payload to dst as one frame.
func appendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// readFrameAt reads the frame at off in f.
func readFrameAt(f *os.File, off int64, max int) ([]byte, error) {
	var h [frameHeader]byte
	if _, err := f.ReadAt(h[:], off); err != nil {
		return nil, errTorn
	}
	size := binary.BigEndian.Uint32(h[:])
	if size == 0 || size > uint32(max) {
		return nil, errBadFrame
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, off+frameHeader); err != nil {
		return nil, errTorn
	}
	return b, nil
}

// onlyZeros reports whether f holds nothing but zero bytes from off on:
// after a crash some file systems show an extended file whose new blocks
// were never written.
func onlyZeros(f *os.File, off int64) (bool, error) {
	r := bufio.NewReader(io.NewSectionReader(f, off, 1<<62))
	for {
		c, err := r.ReadByte()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if c != 0 {
			return false, nil
		}
	}
}

// A frontier holds, for each level of the tree, the last node completed at
// that level. They are exactly the hashes that tlog.StoredHashes needs to
// add the next record and tlog.TreeHash needs for the current root, so
// appending and verifying never read hashes back from disk.
type frontier struct {
	nodes [64]struct {
		index int64 // stored hash index, -1 if none
		hash  tlog.Hash
	}
}

func newFrontier() *frontier {
	f := new(frontier)
	for i := range f.nodes {
		f.nodes[i].index = -1
	}
	return f
}

// add computes the stored hashes of record n with leaf hash h, which
// must follow records 0..n-1, and appends them to dst.
func (f *frontier) add(n int64, h tlog.Hash, dst []tlog.Hash) ([]tlog.Hash, error) {
	hashes, err := tlog.StoredHashesForRecordHash(n, h, f)
	if err != nil {
		return dst, err
	}
	base := tlog.StoredHashIndex(0, n)
	for level, h := range hashes {
		f.nodes[level].index = base + int64(level)
		f.nodes[level].hash = h
	}
	return append(dst, hashes...), nil
}

// load sets f to the frontier of a tree of size n whose stored hashes r
// reads.
func (f *frontier) load(n int64, r tlog.HashReader) error {
	*f = *newFrontier()
	for level := 0; level < 63; level++ {
		m := n >> level // nodes complete at this level
		if m == 0 {
			break
		}
		idx := tlog.StoredHashIndex(level, m-1)
		h, err := r.ReadHashes([]int64{idx})
		if err != nil {
			return err
		}
		f.nodes[level].index, f.nodes[level].hash = idx, h[0]
	}
	return nil
}

// ReadHashes implements tlog.HashReader over the frontier alone.
func (f *frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
Next:
	for i, idx := range indexes {
		for _, n := range f.nodes {
			if n.index == idx {
				out[i] = n.hash
				continue Next
			}
		}
		return nil, fmt.Errorf("audit: hash %d not on the frontier", idx)
	}
	return out, nil
}

// fileHashes reads stored hashes from the hashes file. It serves proofs,
// which only ask for hashes of committed records, already written.
type fileHashes struct{ f *os.File }

func (r fileHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		if _, err := r.f.ReadAt(out[i][:], idx*tlog.HashSize); err != nil {
			return nil, fmt.Errorf("audit: read hash %d: %w", idx, err)
		}
	}
	return out, nil
}
