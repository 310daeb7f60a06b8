package event_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/core/event"
)

func TestDecode(t *testing.T) {
	const ok = `{"eid":"e-1","event_date":1700000000000,"ext_brand_id":"b","user_ext_id":"u","event_type":"login"}`
	cases := []struct {
		name, in string
		field    string // "" = valid; else the field the error must name
	}{
		{"valid", ok, ""},
		{"payload and skip_cjm", `{"eid":"e","event_date":1,"ext_brand_id":"b","user_ext_id":"u","event_type":"update_profile","payload":{"+tags":"x"},"skip_cjm":true}`, ""},
		{"no eid", `{"event_date":1,"ext_brand_id":"b","user_ext_id":"u","event_type":"login"}`, "eid"},
		{"no brand", `{"eid":"e","event_date":1,"user_ext_id":"u","event_type":"login"}`, "ext_brand_id"},
		{"no date", `{"eid":"e","ext_brand_id":"b","user_ext_id":"u","event_type":"login"}`, "event_date"},
		{"bad type name", `{"eid":"e","event_date":1,"ext_brand_id":"b","user_ext_id":"u","event_type":"Log In"}`, "event_type"},
		{"date as string", `{"eid":"e","event_date":"1","ext_brand_id":"b","user_ext_id":"u","event_type":"login"}`, "event_date"},
		{"NUL in user", `{"eid":"e","event_date":1,"ext_brand_id":"b","user_ext_id":"u\u0000","event_type":"login"}`, "user_ext_id"},
		{"long eid", `{"eid":"` + strings.Repeat("e", 129) + `","event_date":1,"ext_brand_id":"b","user_ext_id":"u","event_type":"login"}`, "eid"},
		{"unknown field", `{"eid":"e","event_date":1,"ext_brand_id":"b","user_ext_id":"u","event_type":"login","emial":"x"}`, "JSON"},
		{"trailing data", ok + `{}`, "trailing"},
		{"not an object", `[1]`, "JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := event.Decode([]byte(tc.in))
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, event.ErrInvalid) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("Decode = %v, want ErrInvalid naming %s", err, tc.field)
			}
		})
	}
}
