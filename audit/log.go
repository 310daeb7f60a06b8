package audit

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// DefaultCheckpointEvery is how often, at most, the log signs a new
// checkpoint while it grows. Every checkpoint is kept forever (witnesses
// and auditors compare any two), so one per record would bloat the file
// for nothing; every ten seconds bounds the unsigned tail in time and the
// checkpoints file to about 700 MB a year of constant traffic.
const DefaultCheckpointEvery = 10 * time.Second

// Group commit limits: one write and one fsync carry at most this much.
const (
	maxGroupRecords = 8192
	maxGroupBytes   = 8 << 20
)

// Options configure a Log.
type Options struct {
	// Origin names the log in its checkpoints and is the note key name of
	// its signer. Empty means the signer's name; anything else must equal
	// it.
	Origin string
	// Now is the clock for record times. Default time.Now.
	Now func() time.Time
	// Logger gets recovery and failure reports. Default: discard.
	Logger *slog.Logger
	// CheckpointEvery is the least time between two signed checkpoints
	// (see DefaultCheckpointEvery, used when zero). A negative value signs
	// one after every group commit, which tests use.
	CheckpointEvery time.Duration
}

var (
	// ErrClosed is returned by a closed Log.
	ErrClosed = errors.New("audit: log closed")
	// ErrFailed wraps the I/O error after which a Log stops accepting
	// records: after a failed write or fsync the file's state is unknown,
	// and only Open's recovery can re-establish it.
	ErrFailed = errors.New("audit: log failed, reopen to recover")
)

// A Log is an open audit log directory. It is safe for concurrent use.
//
// Appends are group-committed: concurrent callers hand their records to one
// writer goroutine, which writes everything pending with one write and one
// fsync, then answers them all. Throughput therefore grows with
// concurrency instead of being one fsync per call.
type Log struct {
	dir    string
	origin string
	signer note.Signer
	now    func() time.Time
	log    *slog.Logger
	every  time.Duration

	lockf, entries, hashes, index, cps *os.File
	proofs                             fileHashes

	reqs   chan *request
	sendMu sync.RWMutex // held for reading while sending on reqs
	closed bool         // reqs is closed; guarded by sendMu
	done   chan struct{}

	// Owned by the writer goroutine (and by Open before it starts).
	front    *frontier
	end      int64 // length of the entries file
	n        int64 // records written
	lastTime time.Time
	buf      []byte
	hbuf     []byte
	ibuf     []byte

	mu     sync.Mutex
	size   int64 // committed (durable) records
	root   tlog.Hash
	failed error

	cpMu   sync.Mutex
	shut   bool   // files closed
	cp     []byte // the latest signed checkpoint
	cpc    Checkpoint
	cpTime time.Time

	commits, committed atomic.Int64 // for the benchmark's group sizes
}

type request struct {
	recs  []prepared
	size  int // bytes, about
	first int64
	err   error
	done  chan struct{}
}

// Open opens the log in dir, creating it if needed, and recovers it from a
// crash: a record cut short by the crash is removed (it was never
// acknowledged, since Append returns only after fsync), and the hashes and
// index files are checked against the entries and the latest checkpoint and
// rebuilt where they disagree. Open refuses a log whose entries no longer
// match its latest checkpoint (ErrTruncated, ErrAltered): that is not a
// crash, and signing on top of it would bury the evidence.
//
// Recovery reads only the records after the latest checkpoint, since the
// hashes and index files are synced before each checkpoint is signed. If
// they are missing or wrong, Open rebuilds them from every entry.
func Open(dir string, signer note.Signer, opts Options) (*Log, error) {
	if signer == nil || !validName(signer.Name()) {
		return nil, errors.New("audit: open: signer has no valid name")
	}
	origin := opts.Origin
	if origin == "" {
		origin = signer.Name()
	}
	if origin != signer.Name() {
		return nil, errors.New("audit: open: origin differs from the signer's key name")
	}
	l := &Log{
		dir: dir, origin: origin, signer: signer,
		now: opts.Now, log: opts.Logger, every: opts.CheckpointEvery,
		reqs: make(chan *request, 1024), done: make(chan struct{}),
		front: newFrontier(),
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.every == 0 {
		l.every = DefaultCheckpointEvery
	}
	if err := l.open(); err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("audit: open %s: %w", dir, err)
	}
	if l.cp == nil || l.cpc.Size < l.size {
		if _, err := l.checkpoint(true); err != nil {
			l.closeFiles()
			return nil, fmt.Errorf("audit: open %s: %w", dir, err)
		}
	}
	l.log.Info("audit log open", "size", l.size, "checkpoint", l.cpc.Size)
	go l.run()
	return l, nil
}

func (l *Log) open() error {
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return err
	}
	var err error
	if l.lockf, err = os.OpenFile(filepath.Join(l.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return err
	}
	if err := lock(l.lockf); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		fp   **os.File
	}{{entriesFile, &l.entries}, {hashesFile, &l.hashes}, {indexFile, &l.index}, {checkpointsFile, &l.cps}} {
		if *f.fp, err = os.OpenFile(filepath.Join(l.dir, f.name), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return err
		}
	}
	l.proofs = fileHashes{l.hashes}
	if err := l.recoverCheckpoints(); err != nil {
		return err
	}
	return l.recoverEntries()
}

// recoverCheckpoints finds the latest checkpoint and drops a torn one.
// The log holds only a signer, so it checks the checkpoints' bodies, not
// their signatures: they are its own, and Verify checks them for others.
func (l *Log) recoverCheckpoints() error {
	fr := newFrameReader(l.cps, 0, maxCheckpointLen)
	var last []byte
	for {
		b, err := fr.next(nil)
		if err == io.EOF {
			break
		}
		if err != nil {
			if err := l.dropTail(l.cps, checkpointsFile, fr.off, err); err != nil {
				return err
			}
			break
		}
		last = b
	}
	if last == nil {
		return nil
	}
	text, ok := noteBody(last)
	if !ok {
		return fmt.Errorf("%w: latest checkpoint is not a signed note", ErrAltered)
	}
	c, err := parseBody(text)
	if err != nil {
		return fmt.Errorf("%w: latest checkpoint: %v", ErrAltered, err)
	}
	if c.Origin != l.origin {
		return fmt.Errorf("latest checkpoint is for another origin")
	}
	if !signedBy(last, l.signer) {
		// Verify checks a log against one key; signing on with another
		// would make its history unverifiable. A new key needs a new log.
		return errors.New("latest checkpoint is signed by another key than the signer's")
	}
	l.cp, l.cpc = last, c
	return nil
}

// signedBy reports whether note b carries a signature line with s's name
// and key hash. It does not check the signature.
func signedBy(b []byte, s note.Signer) bool {
	prefix := "\u2014 " + s.Name() + " "
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(rest)
		if err == nil && len(sig) >= 4 && binary.BigEndian.Uint32(sig) == s.KeyHash() {
			return true
		}
	}
	return false
}

// dropTail truncates f at off after a bad last frame, if the damage looks
// like a crash: a frame cut short, or zeros the file system never wrote.
func (l *Log) dropTail(f *os.File, name string, off int64, cause error) error {
	if errors.Is(cause, errBadFrame) {
		zeros, err := onlyZeros(f, off)
		if err != nil {
			return err
		}
		if !zeros {
			return fmt.Errorf("%w: %s: corrupt frame at offset %d", ErrAltered, name, off)
		}
	} else if !errors.Is(cause, errTorn) {
		return fmt.Errorf("%s: %w", name, cause)
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	l.log.Warn("audit: removing an incomplete write left by a crash", "file", name, "offset", off, "bytes", fi.Size()-off)
	if err := f.Truncate(off); err != nil {
		return err
	}
	return f.Sync()
}

// recoverEntries brings the hashes and index files in line with the
// entries and sets the log's size, root and clock.
func (l *Log) recoverEntries() error {
	signed := l.cpc.Size
	start, off, last, err := l.trustedPrefix(signed)
	if err != nil {
		return err
	}
	// Everything from start on is recomputed from the entries.
	if err := l.index.Truncate(start * 8); err != nil {
		return err
	}
	if err := l.hashes.Truncate(tlog.StoredHashCount(start) * tlog.HashSize); err != nil {
		return err
	}
	if start > 0 {
		if err := l.front.load(start, l.proofs); err != nil {
			return err
		}
	}
	hw := bufio.NewWriterSize(l.hashes, 1<<20)
	iw := bufio.NewWriterSize(l.index, 1<<20)
	if _, err := l.entries.Seek(off, io.SeekStart); err != nil {
		return err
	}
	fr := newFrameReader(l.entries, off, maxEntryLen)
	n := start
	var (
		hs  []tlog.Hash
		buf []byte
		ob  [8]byte
	)
	for {
		frameOff := fr.off
		b, err := fr.next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			if n < signed && errors.Is(err, errTorn) {
				return fmt.Errorf("%w: %d entries, the latest checkpoint signs %d", ErrTruncated, n, signed)
			}
			if n < signed {
				return fmt.Errorf("%w: entry %d is damaged but covered by a signed checkpoint", ErrAltered, n)
			}
			if err := l.dropTail(l.entries, entriesFile, fr.off, err); err != nil {
				return err
			}
			break
		}
		buf = b
		if hs, err = l.front.add(n, tlog.RecordHash(b), hs[:0]); err != nil {
			return err
		}
		for _, h := range hs {
			hw.Write(h[:])
		}
		iw.Write(binary.BigEndian.AppendUint64(ob[:0], uint64(frameOff)))
		n++
		if n == signed && start == 0 {
			root, err := tlog.TreeHash(n, l.front)
			if err != nil {
				return err
			}
			if root != l.cpc.Root {
				return fmt.Errorf("%w: entries do not match the latest checkpoint", ErrAltered)
			}
		}
		last = append(last[:0], b...)
	}
	if n < signed {
		return fmt.Errorf("%w: %d entries, the latest checkpoint signs %d", ErrTruncated, n, signed)
	}
	if err := hw.Flush(); err != nil {
		return err
	}
	if err := iw.Flush(); err != nil {
		return err
	}
	if n > start {
		l.log.Info("audit: rehashed entries after the latest checkpoint", "from", start, "to", n)
	}
	for _, f := range []*os.File{l.hashes, l.index} {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if n > 0 {
		r, err := parseEntry(last, false)
		if err != nil || r.Index != n-1 {
			return fmt.Errorf("%w: last entry is not record %d", ErrAltered, n-1)
		}
		l.lastTime = r.Time
	}
	if l.end, err = l.entries.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	root, err := tlog.TreeHash(n, l.front)
	if err != nil {
		return err
	}
	l.n, l.size, l.root = n, n, root
	return nil
}

// trustedPrefix returns how many records (start) the hashes and index
// files hold correctly, the entries offset where record start begins, and
// the bytes of record start-1. It trusts the files up to the latest
// checkpoint if they reproduce its root and point at the entry whose hash
// they hold; otherwise it starts from nothing.
func (l *Log) trustedPrefix(signed int64) (start, off int64, last []byte, err error) {
	if signed == 0 {
		return 0, 0, nil, nil
	}
	hfi, err := l.hashes.Stat()
	if err != nil {
		return 0, 0, nil, err
	}
	ifi, err := l.index.Stat()
	if err != nil {
		return 0, 0, nil, err
	}
	if hfi.Size() < tlog.StoredHashCount(signed)*tlog.HashSize || ifi.Size() < signed*8 {
		l.log.Warn("audit: hashes or index file short, rebuilding from every entry")
		return 0, 0, nil, nil
	}
	if root, err := tlog.TreeHash(signed, l.proofs); err != nil || root != l.cpc.Root {
		l.log.Warn("audit: hashes file does not match the latest checkpoint, rebuilding from every entry")
		return 0, 0, nil, nil
	}
	var ob [8]byte
	if _, err := l.index.ReadAt(ob[:], (signed-1)*8); err != nil {
		return 0, 0, nil, err
	}
	at := int64(binary.BigEndian.Uint64(ob[:]))
	b, ferr := readFrameAt(l.entries, at, maxEntryLen)
	leaf, herr := l.proofs.ReadHashes([]int64{tlog.StoredHashIndex(0, signed-1)})
	if ferr != nil || herr != nil || tlog.RecordHash(b) != leaf[0] {
		l.log.Warn("audit: index file does not match the entries, rebuilding from every entry")
		return 0, 0, nil, nil
	}
	return signed, at + frameHeader + int64(len(b)), b, nil
}

// run is the writer goroutine.
func (l *Log) run() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.every > 0 {
		t := time.NewTicker(l.every)
		defer t.Stop()
		tick = t.C
	}
	batch := make([]*request, 0, 64)
	for {
		select {
		case req, ok := <-l.reqs:
			if !ok {
				return
			}
			batch = append(batch[:0], req)
			n, size := len(req.recs), req.size
		gather:
			for n < maxGroupRecords && size < maxGroupBytes {
				select {
				case r, ok := <-l.reqs:
					if !ok {
						break gather // commit what we have; the next receive returns
					}
					batch = append(batch, r)
					n, size = n+len(r.recs), size+r.size
				default:
					break gather
				}
			}
			l.commit(batch)
			clear(batch)
			if l.every < 0 {
				l.checkpoint(false)
			}
		case <-tick:
			if _, err := l.checkpoint(false); err != nil {
				l.log.Error("audit: signing a checkpoint failed", "err", err)
			}
		}
	}
}

// commit writes the records of batch, fsyncs, and answers each request.
func (l *Log) commit(batch []*request) {
	err := l.write(batch)
	for _, req := range batch {
		req.err = err
		close(req.done)
	}
}

func (l *Log) write(batch []*request) error {
	l.mu.Lock()
	failed := l.failed
	l.mu.Unlock()
	if failed != nil {
		return failed
	}
	// Record times never go backwards, even if the wall clock does: Verify
	// holds the log to that.
	t := l.now().UTC()
	if t.Before(l.lastTime) {
		t = l.lastTime
	}
	ts := formatTime(t)
	buf, hbuf, ibuf := l.buf[:0], l.hbuf[:0], l.ibuf[:0]
	n := l.n
	var hs []tlog.Hash
	for _, req := range batch {
		req.first = n
		for _, p := range req.recs {
			start := len(buf)
			buf = append(buf, 0, 0, 0, 0)
			buf = p.appendTo(buf, n, ts)
			binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-frameHeader))
			ibuf = binary.BigEndian.AppendUint64(ibuf, uint64(l.end+int64(start)))
			var err error
			if hs, err = l.front.add(n, tlog.RecordHash(buf[start+frameHeader:]), hs[:0]); err != nil {
				return l.fail(err)
			}
			for _, h := range hs {
				hbuf = append(hbuf, h[:]...)
			}
			n++
		}
	}
	l.buf, l.hbuf, l.ibuf = buf, hbuf, ibuf
	if _, err := l.entries.Write(buf); err != nil {
		return l.fail(err)
	}
	if err := l.entries.Sync(); err != nil {
		return l.fail(err)
	}
	// The hashes and index are derived data: written now so proofs can use
	// them, synced only before a checkpoint (Open rebuilds them after a
	// crash), so a group commit costs one fsync.
	if _, err := l.hashes.Write(hbuf); err != nil {
		return l.fail(err)
	}
	if _, err := l.index.Write(ibuf); err != nil {
		return l.fail(err)
	}
	root, err := tlog.TreeHash(n, l.front)
	if err != nil {
		return l.fail(err)
	}
	l.commits.Add(1)
	l.committed.Add(n - l.n)
	l.end += int64(len(buf))
	l.n, l.lastTime = n, t
	if cap(l.buf) > 2*maxGroupBytes { // do not keep one huge batch's memory
		l.buf, l.hbuf, l.ibuf = nil, nil, nil
	}
	l.mu.Lock()
	l.size, l.root = n, root
	l.mu.Unlock()
	return nil
}

// fail makes the log refuse all further work and returns the error.
func (l *Log) fail(err error) error {
	err = fmt.Errorf("%w: %v", ErrFailed, err)
	l.log.Error("audit: log failed", "err", err)
	l.mu.Lock()
	if l.failed == nil {
		l.failed = err
	}
	err = l.failed
	l.mu.Unlock()
	return err
}

// Append appends recs to the log and returns the index of the first. It
// returns once they are durable (written and fsynced), sharing that work
// with concurrent callers. The log sets each record's Index and Time; the
// records of one call get consecutive indexes.
//
// If ctx is done before the records are durable, Append returns ctx's
// error, but the records may still be appended. After any other error the
// records may or may not be in the log: the same holds for any database
// whose write fails.
func (l *Log) Append(ctx context.Context, recs ...Record) (int64, error) {
	if len(recs) == 0 {
		return 0, fmt.Errorf("%w: no records", ErrInvalidRecord)
	}
	if len(recs) > maxGroupRecords {
		return 0, fmt.Errorf("%w: more than %d records in one call", ErrInvalidRecord, maxGroupRecords)
	}
	req := &request{recs: make([]prepared, len(recs)), done: make(chan struct{})}
	for i, r := range recs {
		p, err := prepare(r)
		if err != nil {
			return 0, fmt.Errorf("audit: append: record %d: %w", i, err)
		}
		req.recs[i] = p
		req.size += p.size()
	}
	if req.size > maxGroupBytes {
		return 0, fmt.Errorf("%w: more than %d bytes in one call", ErrInvalidRecord, maxGroupBytes)
	}
	l.sendMu.RLock()
	if l.closed {
		l.sendMu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case l.reqs <- req:
		l.sendMu.RUnlock()
	case <-ctx.Done():
		l.sendMu.RUnlock()
		return 0, ctx.Err()
	}
	select {
	case <-req.done:
		if req.err != nil {
			return 0, fmt.Errorf("audit: append: %w", req.err)
		}
		return req.first, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Size returns the number of durable records.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Checkpoint returns the latest signed checkpoint. If the tree has grown
// since it was signed, and it is older than Options.CheckpointEvery, it
// signs and stores a new one first. Callers on a hot path (every status
// callback carries a checkpoint) get the cached one.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return l.checkpoint(false)
}

func (l *Log) checkpoint(force bool) ([]byte, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	if l.shut {
		return nil, ErrClosed
	}
	l.mu.Lock()
	size, root, failed := l.size, l.root, l.failed
	l.mu.Unlock()
	if failed != nil {
		return nil, failed
	}
	if l.cp != nil {
		fresh := l.every >= 0 && l.now().Before(l.cpTime.Add(l.every))
		if l.cpc.Size == size || !force && fresh {
			return l.cp, nil
		}
	}
	// Open trusts the hashes and index files up to the latest checkpoint,
	// so they must be on disk before it is.
	for _, f := range []*os.File{l.hashes, l.index} {
		if err := f.Sync(); err != nil {
			return nil, l.fail(err)
		}
	}
	c := Checkpoint{Origin: l.origin, Size: size, Root: root}
	b, err := note.Sign(&note.Note{Text: string(c.Body())}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	if _, err := l.cps.Write(appendFrame(nil, b)); err != nil {
		return nil, l.fail(err)
	}
	if err := l.cps.Sync(); err != nil {
		return nil, l.fail(err)
	}
	l.cp, l.cpc, l.cpTime = b, c, l.now()
	return b, nil
}

// InclusionProof returns the proof that record index is in the tree of
// the first size records, for CheckInclusion.
func (l *Log) InclusionProof(index, size int64) (tlog.RecordProof, error) {
	if size > l.Size() || index < 0 || index >= size {
		return nil, fmt.Errorf("audit: no record %d in a tree of size %d", index, size)
	}
	return tlog.ProveRecord(size, index, l.proofs)
}

// ConsistencyProof returns the proof that the tree of the first oldSize
// records is a prefix of the tree of the first newSize, for
// CheckConsistency.
func (l *Log) ConsistencyProof(oldSize, newSize int64) (tlog.TreeProof, error) {
	if newSize > l.Size() || oldSize < 0 || oldSize > newSize {
		return nil, fmt.Errorf("audit: no consistency proof from size %d to %d", oldSize, newSize)
	}
	if oldSize == 0 {
		return tlog.TreeProof{}, nil
	}
	return tlog.ProveTree(newSize, oldSize, l.proofs)
}

// Entry returns the stored bytes of record index, the leaf that
// InclusionProof proves.
func (l *Log) Entry(index int64) ([]byte, error) {
	if index < 0 || index >= l.Size() {
		return nil, fmt.Errorf("audit: no record %d", index)
	}
	var ob [8]byte
	if _, err := l.index.ReadAt(ob[:], index*8); err != nil {
		return nil, fmt.Errorf("audit: read index: %w", err)
	}
	b, err := readFrameAt(l.entries, int64(binary.BigEndian.Uint64(ob[:])), maxEntryLen)
	if err != nil {
		return nil, fmt.Errorf("audit: read entry %d: %w", index, err)
	}
	return b, nil
}

// Close waits for pending appends, signs a final checkpoint if the tree
// grew, and closes the files.
func (l *Log) Close() error {
	l.sendMu.Lock()
	if l.closed {
		l.sendMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.sendMu.Unlock()
	<-l.done
	_, err := l.checkpoint(true)
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	l.shut = true
	return errors.Join(err, l.closeFiles())
}

func (l *Log) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{l.entries, l.hashes, l.index, l.cps, l.lockf} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}
