package queue_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/queue"
)

// BenchmarkAccept measures durable accepts from many concurrent callers (as
// HTTP handlers would make them), one envelope of batch messages per call.
// ns/msg is the wall time per message durably accepted.
func BenchmarkAccept(b *testing.B) {
	for _, name := range backendNames {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", name, batch), func(b *testing.B) {
				q := newBackend(b, name).queue(nil)
				var next atomic.Int64
				b.SetParallelism(32)
				b.ReportAllocs()
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				b.RunParallel(func(pb *testing.PB) {
					items := make([]queue.Item, batch)
					for pb.Next() {
						for i := range items {
							id := fmt.Sprintf("m%d", next.Add(1))
							items[i] = accepted("t1", id, "u1", benchRequest(id))
							items[i].Callback = &queue.Event{Status: "queued"}
						}
						if _, err := q.Accept(context.Background(), items); err != nil {
							b.Error(err)
							return
						}
					}
				})
				elapsed, cpu := time.Since(start), cpuTime()-cpu0
				b.StopTimer()
				st := q.Stats()
				b.ReportMetric(float64(elapsed.Nanoseconds())/float64(st.Items), "ns/msg")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(st.Items), "cpu-ns/msg")
				b.ReportMetric(float64(st.Items)/float64(st.Commits), "msgs/commit")
			})
		}
	}
}

// BenchmarkPipeline measures a message's whole way through the queue, as
// the gateway drives it: concurrent callers accept messages one by one
// (with a "queued" event), while senders claim them in batches and finish
// each (with a "sent" event) concurrently. ns/msg is the wall time per
// message accepted, claimed and finished; cpu-ns/msg counts this process
// only (on PostgreSQL the server's work is elsewhere).
func BenchmarkPipeline(b *testing.B) {
	const senders, claimBatch = 4, 32
	for _, name := range backendNames {
		b.Run(name, func(b *testing.B) {
			q := newBackend(b, name).queue(nil)
			ctx := context.Background()
			var next, finished atomic.Int64
			var failed atomic.Bool
			total := int64(b.N)
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			var wg sync.WaitGroup
			for range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for finished.Load() < total && !failed.Load() {
						es, err := q.Claim(ctx, claimBatch, time.Minute)
						if err != nil {
							b.Error(err)
							failed.Store(true)
							return
						}
						if len(es) == 0 {
							time.Sleep(time.Millisecond) // the gateway's sender polls too
							continue
						}
						var fw sync.WaitGroup
						for _, e := range es {
							fw.Add(1)
							go func() {
								defer fw.Done()
								if err := q.Finish(ctx, e.ExtID, queue.Event{Status: "sent"}); err != nil {
									b.Error(err)
									failed.Store(true)
								}
								finished.Add(1)
							}()
						}
						fw.Wait()
					}
				}()
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("m%d", next.Add(1))
					it := accepted("t1", id, "u1", benchRequest(id))
					it.Callback = &queue.Event{Status: "queued"}
					if _, err := q.Accept(ctx, []queue.Item{it}); err != nil {
						b.Error(err)
						failed.Store(true)
						return
					}
				}
			})
			wg.Wait()
			elapsed, cpu := time.Since(start), cpuTime()-cpu0
			b.StopTimer()
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/msg")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// benchHTML is a rendered body of a typical size (about 2.5 KiB), JSON-quoted once.
var benchHTML = strconv.Quote(strings.Repeat("<p>Thank you for your payment.</p>", 72))

func benchRequest(id string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"tenant":"t1","brand":"b1","channel":"email","category":"transactional",`+
		`"purpose":"payment_receipt","to":{"token":"tok_email_v1_abcdefghijklmnopqrstuvwxyz234567"},`+
		`"subject":"Your receipt, {{pii.first_name}}","html":%s}`, id, benchHTML)
}

// cpuTime is the process's user and system CPU time: on a shared machine it
// says more than wall time. The callers' own work (building requests) is in it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
