package kv_test

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
)

// The benchmarks run each operation against Vault KV and, in the same run
// and with the same key provider, against vault/embedded, serially and
// from 16 goroutines (parallel). ops/s is b.N over the wall time.

const benchSubjects = 200

type benchStore struct {
	name   string
	s      vault.Store
	tokens []string
}

func benchStores(b *testing.B) []benchStore {
	b.Helper()
	e := newEnv(b)
	emb, err := embedded.Open(filepath.Join(b.TempDir(), "vault.db"), e.kp, embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { emb.Close() })
	out := []benchStore{{name: "kv", s: e.s}, {name: "embedded", s: emb}}
	for i := range out {
		for n := range benchSubjects {
			sub := mustPut(b, out[i].s, benchRef(n), benchRecord(n, 0))
			out[i].tokens = append(out[i].tokens, sub.Tokens[vault.KindEmail])
		}
	}
	return out
}

func benchRef(n int) vault.Ref {
	return vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprintf("u-%d", n)}
}

func benchRecord(n, gen int) vault.Record {
	return vault.Record{
		Email: fmt.Sprintf("player-%d-%d@example.com", n, gen), Phone: fmt.Sprintf("+1555010%04d", n),
		FirstName: "Player", Locale: "en-GB", Country: "MT", Timezone: "Europe/Malta",
		Consents: map[string]bool{"marketing_email": true},
	}
}

func runBench(b *testing.B, op func(i int) error) {
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if err := op(i); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Int64
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := op(int(next.Add(1))); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}

func BenchmarkResolve(b *testing.B) {
	for _, bs := range benchStores(b) {
		b.Run(bs.name, func(b *testing.B) {
			runBench(b, func(i int) error {
				_, err := bs.s.Resolve(ctx, benchRef(i%benchSubjects))
				return err
			})
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	for _, bs := range benchStores(b) {
		b.Run(bs.name, func(b *testing.B) {
			runBench(b, func(i int) error {
				_, err := bs.s.Lookup(ctx, "acme", "casino-1", bs.tokens[i%benchSubjects])
				return err
			})
		})
	}
}

// BenchmarkPut updates existing subjects with a new address each time, so
// every Put re-indexes a token.
func BenchmarkPut(b *testing.B) {
	for _, bs := range benchStores(b) {
		b.Run(bs.name, func(b *testing.B) {
			runBench(b, func(i int) error {
				_, err := bs.s.Put(ctx, benchRef(i%benchSubjects), benchRecord(i%benchSubjects, i))
				return err
			})
		})
	}
}
