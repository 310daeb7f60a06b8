package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/internal/vaultdev"
	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/hashivault"
	"github.com/blindpost/blindpost/vault/kv"
	"github.com/blindpost/blindpost/vault/postgres"
)

// BenchmarkResolveBackends resolves records from every record store and key
// provider the gateway can run on, in one run, so that each can be read
// against the embedded default (issue 5's goal: ≥ 50,000 resolves/s
// embedded, ≥ 5,000/s through Vault with batching, on two cores):
//
//	embedded           SQLite file, local key file
//	postgres           PostgreSQL on 127.0.0.1:5432, local key file
//	embedded+transit   SQLite file, data keys unwrapped by Vault Transit (batched)
//	postgres+transit   the production pairing of deploy/examples
//	kv+transit         records in Vault KV v2: PII nowhere but in Vault
//
// Each resolves 1,000 subjects round-robin from 16 goroutines per CPU: the
// gateway resolves for many in-flight messages at once, and the remote
// backends spend most of a call waiting. A backend whose server is absent
// is skipped. Run:
//
//	go test -run '^$' -bench ResolveBackends -benchtime 20000x ./bench/
func BenchmarkResolveBackends(b *testing.B) {
	ctx := context.Background()
	keyFile := filepath.Join(b.TempDir(), "vault.key")
	if err := embedded.GenerateKeyFile(keyFile); err != nil {
		b.Fatal(err)
	}
	local, err := embedded.NewKeyFileProvider(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	const tenant = "bench"
	dsn := benchPostgres(b)
	transit := benchTransit(b, tenant)

	type backend struct {
		name string
		open func(b *testing.B) vault.Store // nil: skipped, with why
		why  string
	}
	openEmbedded := func(kp vault.KeyProvider) func(b *testing.B) vault.Store {
		return func(b *testing.B) vault.Store {
			s, err := embedded.Open(filepath.Join(b.TempDir(), "vault.db"), kp, embedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
	}
	openPostgres := func(kp vault.KeyProvider) func(b *testing.B) vault.Store {
		if dsn == "" {
			return nil
		}
		return func(b *testing.B) vault.Store {
			schema := fmt.Sprintf("bp_bench_%d", rand.Uint32())
			b.Cleanup(func() { dropSchema(dsn, schema) })
			s, err := postgres.Open(ctx, dsn, kp, postgres.Options{Schema: schema})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
	}
	backends := []backend{
		{name: "embedded", open: openEmbedded(local)},
		{name: "postgres", open: openPostgres(local), why: "PostgreSQL unreachable"},
	}
	if transit != nil {
		backends = append(backends,
			backend{name: "embedded+transit", open: openEmbedded(transit)},
			backend{name: "postgres+transit", open: openPostgres(transit), why: "PostgreSQL unreachable"},
			backend{name: "kv+transit", open: func(b *testing.B) vault.Store {
				// A dev server mounts KV v2 at secret/, kv's default.
				s, err := kv.New(transit.Client(), transit, kv.Options{Prefix: fmt.Sprintf("bench-%d", rand.Uint32())})
				if err != nil {
					b.Fatal(err)
				}
				return s
			}})
	} else {
		for _, n := range []string{"embedded+transit", "postgres+transit", "kv+transit"} {
			backends = append(backends, backend{name: n, why: "no Vault server binary (tools/vault/build-vault.sh)"})
		}
	}

	const subjects = 1000
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			if be.open == nil {
				b.Skip(be.why)
			}
			st := be.open(b)
			defer st.Close()
			refs := make([]vault.Ref, subjects)
			for i := range refs {
				refs[i] = vault.Ref{Tenant: tenant, Brand: "brand-1", User: fmt.Sprintf("user-%04d", i)}
				rec := vault.Record{Email: fmt.Sprintf("player%04d@example.com", i), Phone: fmt.Sprintf("+1555%07d", i),
					FirstName: fmt.Sprintf("Player%04d", i), Country: "MT"}
				if _, err := st.Put(ctx, refs[i], rec); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := st.Resolve(ctx, refs[next.Add(1)%subjects]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "resolves/s")
		})
	}
}

// benchPostgres returns the test server's DSN, or "" without one.
func benchPostgres(b *testing.B) string {
	dsn := os.Getenv("BLINDPOST_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		b.Logf("PostgreSQL unreachable: %v", err)
		return ""
	}
	conn.Close(context.Background())
	return dsn
}

func dropSchema(dsn, schema string) {
	if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
		conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		conn.Close(context.Background())
	}
}

// benchTransit starts a Vault dev server with the tenant's Transit keys and
// returns a provider with batching on, or nil without a Vault binary.
func benchTransit(b *testing.B, tenant string) *hashivault.Provider {
	bin, err := vaultdev.Binary()
	if err != nil {
		b.Log(err)
		return nil
	}
	srv, err := vaultdev.Start(bin, vaultdev.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Stop)
	if err := srv.Mount("transit"); err != nil {
		b.Fatal(err)
	}
	const tokenEnv = "BLINDPOST_BENCH_VAULT_TOKEN"
	b.Setenv(tokenEnv, srv.RootToken)
	p, err := hashivault.New(context.Background(), hashivault.Config{Address: srv.Addr,
		Auth: hashivault.AuthConfig{Method: "token", TokenEnv: tokenEnv}}, hashivault.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	if _, err := p.Setup(context.Background(), tenant); err != nil {
		b.Fatal(err)
	}
	return p
}
