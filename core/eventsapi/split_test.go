package eventsapi

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"testing/iotest"
)

// reference is what encoding/json makes of a body: its elements if it is
// one well-formed JSON array.
func reference(body []byte) ([]json.RawMessage, bool) {
	var elems []json.RawMessage
	if !json.Valid(body) || json.Unmarshal(body, &elems) != nil {
		return nil, false
	}
	return elems, true
}

// split is what the events API accepts: the splitter's elements, each
// well-formed (what ingest.Batch.RequireJSON checks).
func split(r io.Reader) ([][]byte, bool) {
	var elems [][]byte
	if err := readBatch(r, func(v []byte) { elems = append(elems, v) }); err != nil {
		return nil, false
	}
	for _, e := range elems {
		if !json.Valid(e) {
			return nil, false
		}
	}
	return elems, true
}

var splitSeeds = []string{
	`[]`, ` [ ] `, `[1]`, `[1,2 , 3]`, `["a","b\"]",{"c":"]}"}]`, `[{"a":[1,{"b":"x\\"}]}, [[]], null, true, -1.5e3]`,
	`[{"eid":"e1","payload":{"s":"a,b]c}"}}]`, "[\n\t{\"x\": 1}\r\n]\n",
	``, ` `, `{}`, `"[]"`, `[`, `[1`, `[1,`, `[1,]`, `[,1]`, `[1 2]`, `[{"a":1}}]`, `[{"a":[1}]]`, `[tru]`, `[1]x`, `[1] []`,
	`[{"a":"\u00e9"}]`, `["\\\\"]`, `[1"2"]`, `[{]`, `[}]`, `["unterminated]`, `[1]` + "\x00",
}

func FuzzSplitMatchesEncodingJSON(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wantOK := reference(body)
		for name, r := range map[string]io.Reader{"whole": bytes.NewReader(body), "bytewise": iotest.OneByteReader(bytes.NewReader(body))} {
			got, ok := split(r)
			if ok != wantOK {
				t.Fatalf("%s: %q: accepted %v, encoding/json %v", name, body, ok, wantOK)
			}
			if !ok {
				continue
			}
			if len(got) != len(want) {
				t.Fatalf("%s: %q: %d elements, want %d", name, body, len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("%s: %q: element %d = %q, want %q", name, body, i, got[i], want[i])
				}
			}
		}
	})
}
