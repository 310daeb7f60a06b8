package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// member is one name/value pair of a JSON object, in document order.
type member struct {
	name  string
	value json.RawMessage
}

// readObject reads data as exactly one JSON object and returns its members
// in document order. Unlike encoding/json's struct decoding it is strict in
// the ways a signed format needs: names match byte for byte (not
// case-insensitively), a name may appear only once, and nothing may follow
// the object. Its errors never quote the input.
func readObject(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(err)
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var ms []member
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("invalid JSON: object key is not a string")
		}
		if seen[name] {
			return nil, fmt.Errorf("duplicate field %s", fieldName(name))
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, jsonError(err)
		}
		ms = append(ms, member{name, v})
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the object")
	}
	return ms, nil
}

// jsonError describes a decoding failure without the input text that
// encoding/json's own messages sometimes quote.
func jsonError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: truncated")
	default:
		return errors.New("invalid JSON")
	}
}

// fieldName quotes a JSON member name for an error message if it looks like
// a schema field name. Anything else is not echoed: a name is input, and
// input may carry personal data.
func fieldName(name string) string {
	isLetter := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	if len(name) == 0 || len(name) > 32 || !isLetter(name[0]) {
		return "(name not shown)"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(isLetter(c) || c >= '0' && c <= '9' || c == '_') {
			return "(name not shown)"
		}
	}
	return strconv.Quote(name)
}

// unmarshalString decodes a JSON string; null leaves dst unchanged.
func unmarshalString(raw json.RawMessage, dst *string) error {
	if err := json.Unmarshal(raw, dst); err != nil {
		return errors.New("must be a string")
	}
	return nil
}

// b64 is the encoding of every byte string on the wire: base64url without
// padding (RFC 4648 §5).
var b64 = base64.RawURLEncoding.Strict()

// decodeB64 decodes base64url without padding, strictly: unlike the
// standard library's decoder it does not skip CR and LF.
func decodeB64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, base64.CorruptInputError(strings.IndexAny(s, "\r\n"))
	}
	return b64.DecodeString(s)
}
