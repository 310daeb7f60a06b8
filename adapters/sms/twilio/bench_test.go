package twilio_test

import (
	"context"
	"testing"

	"github.com/blindpost/blindpost/adapters/sms"
)

// BenchmarkSend sends one message per iteration to the loopback fake
// Twilio: form encoding, HTTP round trip on a kept-alive connection, JSON
// decoding of a real-sized Message resource.
func BenchmarkSend(b *testing.B) {
	srv := startTwilio(b, nil)
	c := mustNew(b, baseConfig(srv.URL))
	m := sms.Message{To: testTo, Body: "Your weekly bonus is waiting: 50 free spins on Golden Slot until Sunday.", Ref: "01J9Z6QW3K6V7Y8Z9A0B1C2D3E"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}
