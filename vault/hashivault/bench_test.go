package hashivault_test

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// Benchmarks run against the dev server TestMain starts, over TLS on
// loopback, sharing the machine's cores with it. "serial" is one caller
// (latency); "parallel" is 16 callers per core, as the gateway's delivery
// workers call the provider concurrently; "-unbatched" turns coalescing
// off (MaxInFlight -1) to show what it buys.

func opsPerSec(b *testing.B, n int) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "ops/s")
}

// runAll measures f(p) for one caller, and for many callers with and
// without coalescing (MaxInFlight 4, the default, and -1).
func runAll(b *testing.B, f func(p *hashivault.Provider) error) {
	s := needVault(b)
	p := rootProvider(b, s)
	cfg := baseConfig(s)
	cfg.MaxInFlight = -1
	alone := mustNew(b, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := f(p); err != nil {
				b.Fatal(err)
			}
		}
		opsPerSec(b, b.N)
	})
	for _, v := range []struct {
		name string
		p    *hashivault.Provider
	}{{"parallel", p}, {"parallel-unbatched", alone}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := f(v.p); err != nil {
						b.Error(err)
						return
					}
				}
			})
			opsPerSec(b, b.N)
		})
	}
}

// benchTenant sets up a tenant with the root token.
func benchTenant(b *testing.B) string {
	return setupTenant(b, rootProvider(b, needVault(b)), "bench")
}

func BenchmarkWrap(b *testing.B) {
	tenant := benchTenant(b)
	dk, ad := dataKey(b), refAD(tenant, "u-1", 1)
	runAll(b, func(p *hashivault.Provider) error { _, err := p.Wrap(ctx, tenant, dk, ad); return err })
}

func BenchmarkUnwrap(b *testing.B) {
	tenant := benchTenant(b)
	dk, ad := dataKey(b), refAD(tenant, "u-1", 1)
	w, err := rootProvider(b, needVault(b)).Wrap(ctx, tenant, dk, ad)
	if err != nil {
		b.Fatal(err)
	}
	runAll(b, func(p *hashivault.Provider) error { _, err := p.Unwrap(ctx, tenant, w, ad); return err })
}

func BenchmarkTokenMAC(b *testing.B) {
	tenant := benchTenant(b)
	msg := []byte("email\x00player@example.com")
	runAll(b, func(p *hashivault.Provider) error { _, err := p.TokenMAC(ctx, tenant, 1, msg); return err })
}

// BenchmarkUnwrapBatch unwraps 256 keys per request; ops/s counts keys.
func BenchmarkUnwrapBatch(b *testing.B) {
	p := rootProvider(b, needVault(b))
	tenant := setupTenant(b, p, "bench")
	const n = 256
	items := make([]hashivault.Item, n)
	for i := range items {
		items[i] = hashivault.Item{Data: dataKey(b), AD: refAD(tenant, fmt.Sprint("u-", i), 1)}
	}
	wrapped, err := p.WrapBatch(ctx, tenant, items)
	if err != nil {
		b.Fatal(err)
	}
	for i := range items {
		items[i].Data = wrapped[i].Data
	}
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.UnwrapBatch(ctx, tenant, items); err != nil {
					b.Error(err)
					return
				}
			}
		})
		opsPerSec(b, b.N*n)
	})
}

// BenchmarkResolve compares the embedded store's Resolve (one Unwrap per
// record) with this provider and with a local key file, in the same run.
func BenchmarkResolve(b *testing.B) {
	s := needVault(b)
	p := rootProvider(b, s)
	tenant := setupTenant(b, p, "bench")
	cfg := baseConfig(s)
	cfg.MaxInFlight = -1
	alone := mustNew(b, cfg, hashivault.Options{Getenv: envWith("BP_TEST_TOKEN", s.RootToken)})
	keyFile := filepath.Join(b.TempDir(), "master.key")
	if err := embedded.GenerateKeyFile(keyFile); err != nil {
		b.Fatal(err)
	}
	local, err := embedded.NewKeyFileProvider(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	for _, kp := range []struct {
		name string
		kp   vault.KeyProvider
	}{{"transit", p}, {"transit-unbatched", alone}, {"local", local}} {
		st, err := embedded.Open(filepath.Join(b.TempDir(), kp.name+".db"), kp.kp, embedded.Options{})
		if err != nil {
			b.Fatal(err)
		}
		const subjects = 200
		refs := make([]vault.Ref, subjects)
		for i := range refs {
			refs[i] = vault.Ref{Tenant: tenant, Brand: "brand-1", User: fmt.Sprint("user-", i)}
			if _, err := st.Put(ctx, refs[i], vault.Record{Email: fmt.Sprintf("p%d@example.com", i)}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(kp.name, func(b *testing.B) {
			var next atomic.Int64
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := st.Resolve(ctx, refs[next.Add(1)%subjects]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			opsPerSec(b, b.N)
		})
		st.Close()
	}
}
