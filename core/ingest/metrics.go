package ingest

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindpost/blindpost/core/event"
)

// result is an event's fate, as the events metric labels it.
type result int

const (
	resultStored result = iota
	resultUserNotFound
	resultDuplicate
	resultInvalid
	resultBrandNotFound
	resultUnknownType
	resultPIIRejected
	numResults
)

var resultNames = [numResults]string{"stored", "user_not_found", "duplicate", "invalid", "brand_not_found", "unknown_type", "pii_rejected"}

// metrics are the pipeline's Prometheus series. Labels are label ids (set by
// the vendor's admin), results and firewall reasons: closed sets, never a
// value an event carried.
type metrics struct {
	events     *prometheus.CounterVec // label, result
	rejections *prometheus.CounterVec // label, reason
	stripped   *prometheus.CounterVec // label, reason
	failures   *prometheus.CounterVec // label
	batch      prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_core_events_total",
			Help: "Events ingested, by label and result (stored, user_not_found: stored but the player was unknown, duplicate, invalid, brand_not_found, unknown_type, pii_rejected).",
		}, []string{"label", "result"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_core_firewall_rejections_total",
			Help: "PII firewall findings in events it refused (reject mode), by label and reason.",
		}, []string{"label", "reason"}),
		stripped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_core_firewall_stripped_total",
			Help: "Payload fields the PII firewall removed from events it kept (strip mode), by label and reason.",
		}, []string{"label", "reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_core_ingest_failures_total",
			Help: "Batches the store did not take (nothing acknowledged; the sender retries), by label.",
		}, []string{"label"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "blindpost_core_ingest_batch_seconds",
			Help:    "Time from the start of a batch (for the events API, the start of its upload) until it is checked and durably stored.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.rejections, m.stripped, m.failures, m.batch}
}

// record counts one batch the store took (a batch it did not take counts
// only as a failure: it comes back): one series lookup per result, not per
// event.
func (m *metrics) record(label string, tally *[numResults]int, rejections []event.Rejection, stripped []string, took time.Duration) {
	for r, n := range tally {
		if n > 0 {
			m.events.WithLabelValues(label, resultNames[r]).Add(float64(n))
		}
	}
	for _, r := range rejections {
		m.rejections.WithLabelValues(label, reasonLabel(r.Reason)).Inc()
	}
	for _, r := range stripped {
		m.stripped.WithLabelValues(label, reasonLabel(r)).Inc()
	}
	m.batch.Observe(took.Seconds())
}
