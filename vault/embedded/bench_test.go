package embedded_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/vault"
)

// The resolve benchmarks read 1000 subjects round-robin, serially and from
// 1 and 16 goroutines per CPU (as bench/BenchmarkResolveBackends does: the
// gateway resolves for many in-flight messages at once). ops/s is reported
// next to ns/op; the goal is 50,000 resolves/s on two cores.
// Run: go test -run '^$' -bench Resolve ./vault/embedded/

const benchSubjects = 1000

func benchRef(i int) vault.Ref {
	return vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("u-", i%benchSubjects)}
}

func populate(b *testing.B, s vault.Store) {
	b.Helper()
	for i := range benchSubjects {
		rec := alice
		rec.Email = fmt.Sprintf("player%d@example.com", i)
		rec.Phone = fmt.Sprintf("+1555%07d", i)
		mustPut(b, s, benchRef(i), rec)
	}
}

func BenchmarkResolve(b *testing.B) {
	s, _ := newStore(b)
	populate(b, s)
	refs := make([]vault.Ref, benchSubjects)
	for i := range refs {
		refs[i] = benchRef(i)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := s.Resolve(ctx, refs[i%benchSubjects]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	// The gateway resolves under a request's context, which can be
	// cancelled: the driver then watches it during the query.
	b.Run("serial-cancelable", func(b *testing.B) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			if _, err := s.Resolve(ctx, refs[i%benchSubjects]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("parallel=%dxCPU", par), func(b *testing.B) {
			b.ReportAllocs()
			var n atomic.Int64
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Resolve(ctx, refs[n.Add(1)%benchSubjects]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

func BenchmarkPut(b *testing.B) {
	s, _ := newStore(b)
	i := 0
	for b.Loop() {
		i++
		if _, err := s.Put(ctx, vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("u-", i)}, alice); err != nil {
			b.Fatal(err)
		}
	}
}
