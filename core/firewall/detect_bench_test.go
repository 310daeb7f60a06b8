package firewall

import (
	"strings"
	"testing"
)

// BenchmarkDetectHostile runs the detectors over 100 KB strings built to
// make a careless scanner quadratic. MB/s should be of the order of the
// typical event's: every detector is linear in its input.
func BenchmarkDetectHostile(b *testing.B) {
	for _, tt := range []struct{ name, unit string }{
		{"dot-markers", "(dot)"}, {"at-markers", "a(at)"}, {"ats", "a@"}, {"local-dots", "a."},
		{"plus", " +1"}, {"digit-groups", "1 "}, {"card-groups", "4111 "}, {"iban-heads", "GB82 "},
		{"domains", "a@b."}, {"open-brackets", "( "},
	} {
		s := strings.Repeat(tt.unit, 100_000/len(tt.unit))
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(s)))
			for b.Loop() {
				detect(s)
			}
		})
	}
}

// BenchmarkJudge is the cost of the name rule on a cache miss, per key: an
// event whose keys are all new (or random) pays it for each of them.
func BenchmarkJudge(b *testing.B) {
	r := newNameRule(nil, nil)
	keys := []string{"amount", "currency", "core_is_email_disabled", "email_token", "psp_tx_id", "game_name",
		"first_deposit", "bonus_code", "created_at", "session_id", "contactEmail", "phone_number", "lastLoginIP"}
	var sc scratch
	b.ResetTimer()
	for b.Loop() {
		for _, k := range keys {
			r.judge(k, &sc)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
}
