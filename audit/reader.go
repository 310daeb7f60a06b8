package audit

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"time"
)

// A Reader reads the records of a log directory, for the auditor's tools.
// It reads the files only and may run while the gateway appends; it sees
// the records durable when each iteration starts, or more. It does not
// verify anything: run Verify first.
type Reader struct {
	path string
}

// OpenReader returns a Reader for the log in dir.
func OpenReader(dir string) (*Reader, error) {
	p := filepath.Join(dir, entriesFile)
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("audit: open reader: %w", err)
	}
	return &Reader{path: p}, nil
}

// Records yields every record in log order. An entry that cannot be read
// ends the sequence with an error wrapping ErrAltered; a last entry still
// being written, or cut short by a crash, ends it quietly.
func (r *Reader) Records() iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		f, err := os.Open(r.path)
		if err != nil {
			yield(Record{}, fmt.Errorf("audit: read: %w", err))
			return
		}
		defer f.Close()
		fr := newFrameReader(f, 0, maxEntryLen)
		for i := 0; ; i++ {
			b, err := fr.next(nil)
			if err == io.EOF || errors.Is(err, errTorn) {
				return
			}
			if err != nil {
				yield(Record{}, fmt.Errorf("audit: read: %w: entry at position %d: %v", ErrAltered, i, err))
				return
			}
			rec, err := parseEntry(b, false)
			if err != nil {
				yield(Record{}, fmt.Errorf("audit: read: %w: entry at position %d: %v", ErrAltered, i, err))
				return
			}
			if !yield(rec, nil) {
				return
			}
		}
	}
}

// FindMessage returns every record about the message whose core message id
// or gateway message id (ext_message_id) is id, in log order. Core ids are
// unique per tenant only, so the records may belong to several tenants.
func (r *Reader) FindMessage(id string) ([]Record, error) {
	var out []Record
	for rec, err := range r.Records() {
		if err != nil {
			return out, err
		}
		if id != "" && (rec.MsgID == id || rec.ExtID == id) {
			out = append(out, rec)
		}
	}
	return out, nil
}

// Between yields the records with from <= Time < to, in log order. Record
// times never go backwards in a log that verifies, so it stops at the
// first record at or after to.
func (r *Reader) Between(from, to time.Time) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for rec, err := range r.Records() {
			if err != nil {
				yield(rec, err)
				return
			}
			if !rec.Time.Before(to) {
				return
			}
			if !rec.Time.Before(from) && !yield(rec, nil) {
				return
			}
		}
	}
}
