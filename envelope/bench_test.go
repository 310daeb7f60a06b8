package envelope_test

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// acceptAll is a replay cache that remembers nothing, so one envelope can
// be opened b.N times; the memory cache's cost is a map insert.
type acceptAll struct{}

func (acceptAll) Check(context.Context, string, []byte, time.Time) error { return nil }

// BenchmarkOpen measures Open, the gateway's cryptographic work per
// envelope — verify, decapsulate, decrypt, canonicalise and digest every
// message, build the tree, verify the batch — and reports it per message.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			f := newFixture(b)
			f.opener.Replay = acceptAll{}
			env := f.seal(b, messages(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.opener.Open(context.Background(), env); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
		})
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			f := newFixture(b)
			msgs := messages(n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.sealer.Seal(tenant, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
		})
	}
}
