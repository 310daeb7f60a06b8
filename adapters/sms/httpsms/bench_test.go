package httpsms_test

import (
	"context"
	"testing"

	"github.com/blindpost/blindpost/adapters/sms"
)

// BenchmarkSend sends one message per iteration to the loopback provider:
// template rendering with JSON escaping, HTTP round trip on a kept-alive
// connection, JSON decoding and the ID pointer.
func BenchmarkSend(b *testing.B) {
	p := startProvider(b, nil)
	c := mustNew(b, jsonConfig(b, p.URL))
	m := sms.Message{To: testTo, Body: "Your weekly bonus is waiting: 50 free spins on \"Golden Slot\" until Sunday.", Ref: "01J9Z6QW3K6V7Y8Z9A0B1C2D3E"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}
