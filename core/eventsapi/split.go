package eventsapi

import (
	"errors"
	"fmt"
	"io"
)

// splitter cuts a JSON array into its elements as the body streams in, by
// following only brackets and strings. It does not validate an element's
// inside: the pipeline decodes every element anyway, strictly, and an
// element it cannot decode is checked for well-formed JSON there
// (ingest.Batch.RequireJSON), so a malformed body is still refused whole.
// One pass over the bytes, where json.Decoder into RawMessage makes three.
type splitter struct {
	r        io.Reader
	buf      []byte
	pos, end int
	off      int64 // bytes consumed before buf[0]
	err      error // sticky read error; io.EOF once the body is consumed
}

var errEnd = errors.New("the body ends inside the JSON array")

func newSplitter(r io.Reader) *splitter { return &splitter{r: r, buf: make([]byte, 64<<10)} }

// fill reads more of the body, keeping buf[pos:end]. It reports whether
// new bytes arrived.
func (s *splitter) fill() bool {
	if s.err != nil {
		return false
	}
	if s.pos > 0 {
		s.off += int64(s.pos)
		s.end = copy(s.buf, s.buf[s.pos:s.end])
		s.pos = 0
	}
	for {
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.err = err
		}
		if n > 0 || err != nil {
			return n > 0
		}
	}
}

// peek skips white space and returns the next byte, without consuming it.
// ok is false at the end of the body or on a read error (s.err).
func (s *splitter) peek() (c byte, ok bool) {
	for {
		for s.pos < s.end {
			switch c := s.buf[s.pos]; c {
			case ' ', '\t', '\n', '\r':
				s.pos++
			default:
				return c, true
			}
		}
		if !s.fill() {
			return 0, false
		}
	}
}

// readErr is the error for a body that ended where more was needed.
func (s *splitter) readErr() error {
	if s.err == nil || s.err == io.EOF {
		return errEnd
	}
	return s.err
}

func (s *splitter) syntax(what string) error {
	return fmt.Errorf("malformed JSON near byte %d: %s", s.off+int64(s.pos), what)
}

// value reads one element, which starts at s.buf[s.pos] (not white space),
// into a slice of its own.
func (s *splitter) value() ([]byte, error) {
	var out []byte
	depth, inString, escaped := 0, false, false
	switch s.buf[s.pos] {
	case ',', ']', '}', ':':
		return nil, s.syntax("a value is missing")
	case '"':
		inString = true
		out = append(out, '"')
		s.pos++
	}
	scalar := !inString && s.buf[s.pos] != '{' && s.buf[s.pos] != '['
	for {
		start := s.pos
		for i := start; i < s.end; i++ {
			c := s.buf[i]
			if inString {
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
					if depth == 0 { // a top-level string ends here
						s.pos = i + 1
						return append(out, s.buf[start:s.pos]...), nil
					}
				}
				continue
			}
			switch c {
			case '"':
				inString = true
			case '{', '[':
				depth++
			case '}', ']':
				if scalar {
					s.pos = i
					return append(out, s.buf[start:i]...), nil
				}
				if depth--; depth == 0 {
					s.pos = i + 1
					return append(out, s.buf[start:s.pos]...), nil
				}
			case ',', ' ', '\t', '\n', '\r':
				if scalar {
					s.pos = i
					return append(out, s.buf[start:i]...), nil
				}
			}
		}
		out = append(out, s.buf[start:s.end]...)
		s.pos = s.end
		if !s.fill() {
			if scalar && s.err == io.EOF {
				return out, nil // the caller finds the missing ']'
			}
			return nil, s.readErr()
		}
	}
}

// readBatch streams the JSON array out of body, handing each element to
// add while the rest is read: the pipeline decodes and checks them
// meanwhile, and the batch is never held as the whole body and its parts
// at once. Its errors say where, never what.
func readBatch(body io.Reader, add func([]byte)) error {
	s := newSplitter(body)
	c, ok := s.peek()
	switch {
	case !ok && s.err == io.EOF:
		return errors.New("the body is empty; want a JSON array of events")
	case !ok:
		return s.readErr()
	case c != '[':
		return errors.New("the body must be a JSON array of events")
	}
	s.pos++
	if c, ok = s.peek(); !ok {
		return s.readErr()
	}
	if c == ']' {
		s.pos++
	} else {
		for {
			v, err := s.value()
			if err != nil {
				return err
			}
			add(v)
			if c, ok = s.peek(); !ok {
				return s.readErr()
			}
			s.pos++
			if c == ']' {
				break
			}
			if c != ',' {
				s.pos--
				return s.syntax("want , or ] after an element")
			}
			if _, ok = s.peek(); !ok { // value needs a byte to start from
				return s.readErr()
			}
		}
	}
	if _, ok := s.peek(); ok {
		return errors.New("trailing data after the JSON array")
	}
	if s.err != io.EOF {
		return s.err
	}
	return nil
}
