package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the gateway's Prometheus series. Labels hold only closed sets
// (tenant ids from the config, status and reason codes), never anything a
// request or a record supplied.
type metrics struct {
	reg          *prometheus.Registry
	envelopes    *prometheus.CounterVec   // result
	messages     *prometheus.CounterVec   // tenant, result
	decisions    *prometheus.CounterVec   // stage, allow
	deliveries   *prometheus.CounterVec   // tenant, channel, status
	callbacks    *prometheus.CounterVec   // result
	acceptDur    *prometheus.HistogramVec // batch size bucket
	sendDur      prometheus.Histogram
	auditErrors  prometheus.Counter
	holds        *prometheus.CounterVec // tenant
	paced        *prometheus.CounterVec // adapter, reason
	receipts     *prometheus.CounterVec // adapter, result
	unsubscribes *prometheus.CounterVec // result
	compat       *prometheus.CounterVec // channel, error code

	policyReloadFailures prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		envelopes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_gateway_envelopes_total",
			Help: "Envelopes received on the message API, by result code.",
		}, []string{"result"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_gateway_messages_total",
			Help: "Message requests answered at acceptance, by tenant and answer.",
		}, []string{"tenant", "result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_gateway_policy_decisions_total",
			Help: "Policy decisions, by stage and outcome.",
		}, []string{"stage", "allow"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_gateway_deliveries_total",
			Help: "Final and intermediate delivery statuses, by tenant, channel and status.",
		}, []string{"tenant", "channel", "status"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindpost_gateway_callbacks_total",
			Help: "Status callback attempts, by result.",
		}, []string{"result"}),
		acceptDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "blindpost_gateway_accept_seconds",
			Help:    "Time to verify, open, check and durably queue one envelope.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"batch"}),
		sendDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "blindpost_gateway_send_seconds",
			Help:    "Time to resolve, decide, render and hand one message to its adapter.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	m.auditErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blindpost_gateway_audit_append_errors_total",
		Help: "Audit log appends that failed; sending stops while they fail.",
	})
	m.holds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blindpost_gateway_volume_guard_holds_total",
		Help: "Messages held back because the tenant's core asked for more than the volume guard allows.",
	}, []string{"tenant"})
	m.policyReloadFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blindpost_gateway_policy_reload_failures_total",
		Help: "Policy bundles refused on reload; the running bundle stayed in force. Alert on any increase.",
	})
	m.paced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blindpost_gateway_paced_total",
		Help: "Messages put back in the queue by an adapter's pacing (rate limit, busy, open circuit), by adapter and reason.",
	}, []string{"adapter", "reason"})
	m.receipts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blindpost_gateway_receipts_total",
		Help: "Delivery receipts from SMS providers, by adapter and result.",
	}, []string{"adapter", "result"})
	m.unsubscribes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blindpost_gateway_unsubscribes_total",
		Help: "One-click unsubscribe requests, by result.",
	}, []string{"result"})
	m.compat = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blindpost_gateway_compat_requests_total",
		Help: "Requests to the compatibility API, by channel and answer code (0: accepted).",
	}, []string{"channel", "code"})
	m.reg.MustRegister(m.compat, m.paced, m.receipts, m.unsubscribes, m.policyReloadFailures, m.holds, m.auditErrors, m.envelopes, m.messages, m.decisions, m.deliveries, m.callbacks,
		m.acceptDur, m.sendDur,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func batchBucket(n int) string {
	switch {
	case n <= 1:
		return "1"
	case n <= 10:
		return "10"
	case n <= 100:
		return "100"
	default:
		return "more"
	}
}
