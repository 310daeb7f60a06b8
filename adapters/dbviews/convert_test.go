package dbviews

import (
	"database/sql"
	"testing"
	"time"
)

func TestEventDate(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want string
	}{
		{"bigint", int64(1700000000123), "1700000000123"},
		{"timestamp", time.UnixMilli(1700000000123).In(time.FixedZone("x", 3600)), "1700000000123"},
		{"integral float", float64(1700000000000), "1700000000000"},
		{"numeric text", []byte("1700000000000"), "1700000000000"},
		{"numeric string", "1700000000000", "1700000000000"},
		{"signed text", "+1700000000000", "1700000000000"}, // valid JSON out
		// Not a date: passed on for the core to refuse, not dropped.
		{"fraction", 1.5, `"1.5"`},
		{"text", []byte("yesterday"), `"yesterday"`},
		{"null", nil, "null"},
		{"bool", true, "null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(eventDate(tc.in)); got != tc.want {
				t.Errorf("eventDate(%v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestPayloadJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   sql.NullString
		want string
	}{
		{"object", sql.NullString{String: `{"a": 1}`, Valid: true}, `{"a": 1}`},
		{"null", sql.NullString{}, ""},
		{"empty", sql.NullString{Valid: true}, ""},
		{"not JSON", sql.NullString{String: `{"a": `, Valid: true}, `"{\"a\": "`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(payloadJSON(tc.in)); got != tc.want {
				t.Errorf("payloadJSON = %s, want %s", got, tc.want)
			}
		})
	}
}
