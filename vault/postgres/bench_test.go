package postgres_test

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/postgres"
)

// The store benchmarks run the same operations against this store and
// vault/embedded in one run, serially and from 8 goroutines per CPU (the
// gateway resolves for many in-flight messages at once; PostgreSQL spends
// most of a call waiting on the network). ops/s is reported next to ns/op.
// Run: go test -run '^$' -bench . ./vault/postgres/

const benchSubjects = 1000

func benchStores(b *testing.B) map[string]func(b *testing.B) vault.Store {
	return map[string]func(b *testing.B) vault.Store{
		"postgres": func(b *testing.B) vault.Store {
			s, _ := newStore(b)
			return s
		},
		"embedded": func(b *testing.B) vault.Store {
			s, err := embedded.Open(filepath.Join(b.TempDir(), "vault.db"), newKey(b), embedded.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func benchRef(i int) vault.Ref {
	return vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("u-", i%benchSubjects)}
}

func benchRecord(i int) vault.Record {
	rec := alice
	rec.Email = fmt.Sprintf("player%d@example.com", i%benchSubjects)
	rec.Phone = fmt.Sprintf("+1555%07d", i%benchSubjects)
	return rec
}

func populate(b *testing.B, s vault.Store) []string {
	b.Helper()
	tokens := make([]string, benchSubjects)
	for i := range benchSubjects {
		tokens[i] = mustPut(b, s, benchRef(i), benchRecord(i)).Tokens[vault.KindEmail]
	}
	return tokens
}

func BenchmarkStores(b *testing.B) {
	for _, name := range []string{"embedded", "postgres"} {
		open := benchStores(b)[name]
		b.Run(name, func(b *testing.B) {
			s := open(b)
			tokens := populate(b, s)
			ops := map[string]func(i int) error{
				"Resolve": func(i int) error { _, err := s.Resolve(ctx, benchRef(i)); return err },
				"Lookup":  func(i int) error { _, err := s.Lookup(ctx, "acme", "casino-1", tokens[i%benchSubjects]); return err },
				"Put":     func(i int) error { _, err := s.Put(ctx, benchRef(i), benchRecord(i)); return err },
			}
			for _, op := range []string{"Resolve", "Lookup", "Put"} {
				f := ops[op]
				b.Run(op+"/serial", func(b *testing.B) {
					i := 0
					for b.Loop() {
						i++
						if err := f(i); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
				})
				b.Run(op+"/parallel", func(b *testing.B) {
					var n atomic.Int64
					b.SetParallelism(8)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := f(int(n.Add(1))); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
				})
			}
		})
	}
}

// BenchmarkShred measures one Shred after one erasure, in a store of n
// subjects: how long the tables stay locked. The rows are written with
// COPY, with the sizes real ones have (a 73-byte wrapped key, a ~330-byte
// sealed record, two tokens); VACUUM FULL does not open them.
func BenchmarkShred(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint("subjects=", n), func(b *testing.B) {
			s, schema := newStore(b)
			c := admin(b)
			fill(b, c, schema, n)
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				ref := vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("erased-", i)}
				mustPut(b, s, ref, alice)
				if err := s.Erase(ctx, ref); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				mustShred(b, s)
			}
		})
	}
}

func BenchmarkEraseWithShredOnErase(b *testing.B) {
	schema := newSchema(b)
	s := mustOpen(b, newKey(b), postgres.Options{Schema: schema, ShredOnErase: true})
	fill(b, admin(b), schema, 10_000)
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		ref := vault.Ref{Tenant: "acme", Brand: "casino-1", User: fmt.Sprint("erased-", i)}
		mustPut(b, s, ref, alice)
		b.StartTimer()
		if err := s.Erase(ctx, ref); err != nil {
			b.Fatal(err)
		}
	}
}

func fill(b *testing.B, c *pgx.Conn, schema string, n int) {
	b.Helper()
	random := func(size int) []byte {
		p := make([]byte, size)
		rand.Read(p)
		return p
	}
	user := func(i int) string { return fmt.Sprint("filler-", i) }
	copyRows := func(table string, cols []string, row func(i int) [][]any) {
		var rows [][]any
		for i := range n {
			rows = append(rows, row(i)...)
		}
		if _, err := c.CopyFrom(ctx, pgx.Identifier{schema, table}, cols, pgx.CopyFromRows(rows)); err != nil {
			b.Fatal(err)
		}
	}
	copyRows("subjects", []string{"tenant", "brand", "user_id", "version", "sealed_record"}, func(i int) [][]any {
		return [][]any{{"acme", "casino-1", user(i), int64(1), random(330)}}
	})
	copyRows("data_keys", []string{"tenant", "brand", "user_id", "wrapped_key"}, func(i int) [][]any {
		return [][]any{{"acme", "casino-1", user(i), random(73)}}
	})
	copyRows("tokens", []string{"tenant", "brand", "user_id", "token"}, func(i int) [][]any {
		return [][]any{
			{"acme", "casino-1", user(i), vault.FormatToken(vault.KindEmail, 1, random(20))},
			{"acme", "casino-1", user(i), vault.FormatToken(vault.KindPhone, 1, random(20))},
		}
	})
	if _, err := c.Exec(ctx, `ANALYZE `+schema+`.subjects, `+schema+`.data_keys, `+schema+`.tokens`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRewrap measures a re-wrap pass after a KEK rotation: every
// key of rewrapSubjects subjects moves to the new version, in pages of the
// default 256. keys/s is the figure `blindpost keys rotate kek` prints.
// "keyfile" is vault/embedded's key file provider (key by key, 8 at a
// time); "transit" is Vault's Transit on a local dev server (a batch
// decrypt and a batch encrypt per page).
func BenchmarkRewrap(b *testing.B) {
	const rewrapSubjects = 2000
	backends := map[string]func(b *testing.B) (vault.KeyProvider, string, func() error){
		"keyfile": func(b *testing.B) (vault.KeyProvider, string, func() error) {
			path := filepath.Join(b.TempDir(), "master.key")
			if err := embedded.GenerateKeyFile(path); err != nil {
				b.Fatal(err)
			}
			kp, err := embedded.NewKeyFileProvider(path)
			if err != nil {
				b.Fatal(err)
			}
			return kp, "acme", func() error { _, err := embedded.RotateKeyFile(path); return err }
		},
		"transit": func(b *testing.B) (vault.KeyProvider, string, func() error) {
			p, tenant := transitTenant(b)
			return p, tenant, func() error { _, err := p.RotateKEK(ctx, tenant); return err }
		},
		// Transit without its batch re-wrap: key by key, 8 at a time,
		// which the provider coalesces into batches of its own.
		"transit-keybykey": func(b *testing.B) (vault.KeyProvider, string, func() error) {
			p, tenant := transitTenant(b)
			return struct {
				vault.KeyProvider
				vault.KEKVersioner
			}{p, p}, tenant, func() error { _, err := p.RotateKEK(ctx, tenant); return err }
		},
	}
	for _, name := range []string{"keyfile", "transit", "transit-keybykey"} {
		b.Run(name, func(b *testing.B) {
			kp, tenant, rotate := backends[name](b)
			s := mustOpen(b, kp, postgres.Options{Schema: newSchema(b)})
			putAllOf(b, s, tenant, rewrapSubjects)
			keys := 0
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				if err := rotate(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				st, err := s.Rewrap(ctx, tenant, vault.RewrapOptions{})
				if err != nil || st.Rewrapped != rewrapSubjects {
					b.Fatalf("Rewrap = %+v, %v", st, err)
				}
				keys += st.Rewrapped
			}
			b.ReportMetric(float64(keys)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
