package compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// tokenDecode is the straightforward decoder that decode replaces for
// speed: json.Decoder's Token, which sees every key. The two must agree.
func tokenDecode(channel string, body []byte) (Request, bool) {
	r := Request{Channel: channel}
	if !utf8.Valid(body) {
		return r, false
	}
	slot := emailSlot
	if channel == ChannelSMS {
		slot = smsSlot
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return r, false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return r, false
		}
		k := tok.(string)
		if seen[k] {
			return r, false
		}
		seen[k] = true
		dst, _ := slot(&r, k)
		if dst == nil {
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return r, false
			}
			continue
		}
		tok, err = dec.Token()
		if err != nil {
			return r, false
		}
		switch v := tok.(type) {
		case string:
			*dst = v
		case nil:
		default:
			return r, false
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return r, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return r, false
	}
	return r, true
}

func FuzzDecodeMatchesTokenDecoder(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	for _, s := range []string{
		`{}`, ` { } `, `{"a":{"b":[1,{"c":"}"}],"d":"\""},"body":"x"}`, `{"ext\u005fuser_id":"a","ext_user_id":"b"}`,
		`{"body":"\ud800"}`, `{"body":null,"body":"x"}`, `{"x":[],"y":{},"z":-1.5e3,"t":true,"f":false,"n":null}`,
		`{"body":"\ud83d\ude00 \ud83d\u0041 \udc00\ud83d \u00e9\/\b\f\n\r\t\"\\ end\ud83d"}`,
		`{"body":"\ud83d\ud83d\ude00","ext_user_id":"\uD83D\uDE00\u0000"}`,
		`{"im_uid":"a"}`, `{"body":1}`, `{"body":"a"} `, `{"body":"a"}x`, `[]`, `"str"`, `{"a":1,"a":2}`,
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, sms bool) {
		ch := ChannelEmail
		if sms {
			ch = ChannelSMS
		}
		got, err := decode(ch, body)
		want, ok := tokenDecode(ch, body)
		if (err == nil) != ok {
			t.Fatalf("decode error %v, token decoder ok %v", err, ok)
		}
		if ok && got != want {
			t.Fatalf("decode\n got %+v\nwant %+v", got, want)
		}
	})
}
