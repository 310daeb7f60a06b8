package twilio

import (
	"encoding/json"
	"testing"
)

func TestFlexInt(t *testing.T) {
	tests := map[string]int{`"2"`: 2, `3`: 3, `null`: 0, `""`: 0, `"x"`: 0, `1.5`: 0}
	for in, want := range tests {
		var n flexInt
		if err := json.Unmarshal([]byte(in), &n); err != nil || int(n) != want {
			t.Errorf("flexInt(%s) = %d, %v; want %d", in, n, err, want)
		}
	}
}
