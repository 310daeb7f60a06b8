package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// decodeBody reads at most limit bytes of a request body holding exactly one
// JSON object and decodes it strictly. On failure it returns the status to
// answer with and an error safe to show.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) (int, error) {
	if r.ContentLength > limit {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	defer clear(b)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", limit)
	case err != nil:
		return http.StatusBadRequest, errors.New("reading body failed")
	}
	if err := decodeStrict(b, v); err != nil {
		return http.StatusBadRequest, err
	}
	return 0, nil
}

// decodeStrict decodes one JSON object, rejecting unknown fields and
// trailing data. Its errors never quote the input: a syntax error gives an
// offset, an unknown or mistyped field is named only if its name could not
// be a value (a short lower-case identifier).
func decodeStrict(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("want a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if name, _, _ := strings.Cut(typ.Field, "."); safeName(name) {
			return fmt.Errorf("field %q has the wrong type", name)
		}
		return errors.New("a field has the wrong type")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated JSON")
	}
	if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		if name = strings.TrimSuffix(name, `"`); safeName(name) {
			return fmt.Errorf("unknown field %q", name)
		}
		return errors.New("unknown field")
	}
	return errors.New("malformed JSON")
}

// safeName reports whether a JSON member name may be echoed: it is short and
// has only lower-case letters and '_', so it cannot be an address or number.
func safeName(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}
