package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/blindpost/blindpost/envelope"
)

// BenchmarkAppend measures group-committed appends on the real file system:
// many callers (the gateway's request handlers and delivery workers) each
// appending `batch` records per call, as one envelope's messages are. It
// reports entries/s and how many records share one fsync.
func BenchmarkAppend(b *testing.B) {
	rec := benchRecord(b)
	for _, bc := range []struct{ callers, batch int }{
		{1, 1}, {64, 1}, {256, 1}, {64, 8}, {16, 64},
	} {
		b.Run(fmt.Sprintf("callers=%d/batch=%d", bc.callers, bc.batch), func(b *testing.B) {
			_, priv, _ := ed25519.GenerateKey(nil)
			s, err := NewSigner("bench.example.com/audit", priv)
			if err != nil {
				b.Fatal(err)
			}
			l, err := Open(b.TempDir(), s, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			recs := make([]Record, bc.batch)
			for i := range recs {
				recs[i] = rec
			}
			b.SetParallelism((bc.callers + 1) / 2) // GOMAXPROCS is 2 here
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(context.Background(), recs...); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			n := float64(b.N * bc.batch)
			b.ReportMetric(n/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(l.committed.Load())/float64(l.commits.Load()), "entries/fsync")
		})
	}
}

// benchRecord is a message_accepted record of realistic size (about 900
// bytes: a proof in a batch of 100).
func benchRecord(b *testing.B) Record {
	d := MessageData{Proof: MessageProof{
		KidSender: envelope.KeyID("0123456789abcdef"), Header: make([]byte, 96),
		InnerSig: make([]byte, 64), Index: 41, Size: 100, Proof: make([][32]byte, 7),
	}, DecisionID: "0b0e6f0c-6e3f-4b4e-9d4e-2f1d8f8f1a2b"}
	data, err := json.Marshal(d)
	if err != nil {
		b.Fatal(err)
	}
	return Record{
		Time: time.Now(), Kind: KindMessageAccepted, Tenant: "tenant-a", MsgID: "msg-000123",
		ExtID: "gw_01HZX3", Pseudonym: "ps_8c1f0e2a", Data: data,
	}
}
