package twilio

import (
	"encoding/json"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"120", 2 * time.Minute},
		{" 3 ", 3 * time.Second},
		{"86401", 0},
		{"soon", 0},
		{now.Add(time.Minute).Format("Mon, 02 Jan 2006 15:04:05 GMT"), time.Minute},
		{now.Add(-time.Minute).Format("Mon, 02 Jan 2006 15:04:05 GMT"), 0},
		{now.Add(48 * time.Hour).Format("Mon, 02 Jan 2006 15:04:05 GMT"), 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFlexInt(t *testing.T) {
	tests := map[string]int{`"2"`: 2, `3`: 3, `null`: 0, `""`: 0, `"x"`: 0, `1.5`: 0}
	for in, want := range tests {
		var n flexInt
		if err := json.Unmarshal([]byte(in), &n); err != nil || int(n) != want {
			t.Errorf("flexInt(%s) = %d, %v; want %d", in, n, err, want)
		}
	}
}
