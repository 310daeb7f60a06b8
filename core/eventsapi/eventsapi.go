// Package eventsapi is the core's events REST API, compatible with the
// reference vendor's (DESIGN.md §1): the operator's PAM posts batches of
// player events to it. It runs on the vendor side; it authenticates the
// label's API key, streams the JSON array out of the body and hands the
// events to the ingestion pipeline (core/ingest), which decodes and checks
// them on every core while the rest of the body arrives.
//
//	POST /api/external/events/v2
//	Authorization: <label API key>            ("Bearer <key>" is accepted too)
//	[{"eid", "event_date", "ext_brand_id", "user_ext_id", "event_type", "payload", "skip_cjm"}, …]
//
// Answers, always {"err_code", "err_message"?, "event_errors"?}:
//
//	200 err_code 0      the batch was processed; every event that was not
//	                    simply stored has its errors in event_errors, keyed by
//	                    eid (an array: an eid may occur twice in a batch).
//	                    Per-event codes: 20056 duplicate eid (stored before,
//	                    nothing changed: the answer to a retry), 10001 user not
//	                    found (stored nonetheless), 125 brand not found, 10002
//	                    invalid event, 10003 refused by the PII firewall, 10004
//	                    unknown event type. An event without a usable eid (none,
//	                    not a string, over 128 bytes, or itself PII) is keyed
//	                    "#<index>", its 0-based position in the batch; eids are
//	                    UUIDs, which never start with "#".
//	400 err_code 10002  the body is not one well-formed JSON array; nothing was
//	                    stored. (An element that is not an event object is a
//	                    per-event 10002.)
//	401 err_code 10000  no or unknown API key; the body was not read.
//	413 err_code 10005  the body is over 10 MB; nothing was stored.
//	503 err_code 10006  the store did not take the batch; nothing was stored
//	                    or acknowledged: retry it (Retry-After), duplicates make
//	                    that safe.
//
// No answer and no log line quotes a value from the body: messages name
// fields, reasons and JSON paths.
package eventsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/ingest"
)

// Path is the events API's route.
const Path = "/api/external/events/v2"

// MaxBatchBytes is the reference vendor's batch limit.
const MaxBatchBytes = 10 << 20

// Request-level codes beyond the reference's 10000; per-event codes are in
// core/event.
const (
	CodeMalformed   = event.CodeInvalid // the body is not one well-formed JSON array
	CodeTooLarge    = 10005
	CodeUnavailable = 10006
)

// Response is the body of every answer.
type Response struct {
	ErrCode     int                      `json:"err_code"`
	ErrMessage  string                   `json:"err_message,omitempty"`
	EventErrors map[string][]event.Error `json:"event_errors,omitempty"`
}

// batchResponse is a 200's body: event_errors always present, {} when
// every event was stored.
type batchResponse struct {
	ErrCode     int                      `json:"err_code"`
	EventErrors map[string][]event.Error `json:"event_errors"`
}

// Options configures the handler.
type Options struct {
	Logger *slog.Logger
	// Registerer, if set, receives the handler's metrics (MustRegister).
	Registerer prometheus.Registerer
	// MaxBody overrides MaxBatchBytes (tests).
	MaxBody int64
}

type handler struct {
	p       *ingest.Pipeline
	log     *slog.Logger
	max     int64
	answers *prometheus.CounterVec
}

// NewHandler returns the events API, serving Path only.
func NewHandler(p *ingest.Pipeline, opts Options) http.Handler {
	h := &handler{p: p, log: opts.Logger, max: opts.MaxBody}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.max == 0 {
		h.max = MaxBatchBytes
	}
	h.answers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "blindpost_core_events_api_requests_total",
		Help: "Events API requests, by HTTP status.",
	}, []string{"status"})
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(h.answers)
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+Path, h)
	return mux
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	attrs := []slog.Attr{slog.String("remote", r.RemoteAddr)}
	status := h.serve(w, r, &attrs)
	h.answers.WithLabelValues(strconv.Itoa(status)).Inc()
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	attrs = append(attrs, slog.Int("status", status), slog.Duration("duration", time.Since(start)))
	h.log.LogAttrs(r.Context(), level, "events batch", attrs...)
}

// serve answers one request and returns its status.
func (h *handler) serve(w http.ResponseWriter, r *http.Request, attrs *[]slog.Attr) int {
	ctx := r.Context()
	key := strings.TrimSpace(r.Header.Get("Authorization"))
	if k, ok := cutBearer(key); ok {
		key = k
	}
	label, err := h.p.Authenticate(ctx, key)
	switch {
	case errors.Is(err, ingest.ErrUnauthorized):
		return reply(w, http.StatusUnauthorized, Response{ErrCode: event.CodeWrongAPIKey, ErrMessage: "wrong api key"})
	case err != nil:
		*attrs = append(*attrs, slog.String("err", err.Error()))
		return unavailable(w)
	}
	*attrs = append(*attrs, slog.String("label", label))
	if r.ContentLength > h.max {
		return tooLarge(w, h.max)
	}
	b, err := h.p.Begin(ctx, label)
	if err != nil {
		*attrs = append(*attrs, slog.String("err", err.Error()))
		return unavailable(w)
	}
	b.RequireJSON()
	err = readBatch(http.MaxBytesReader(w, r.Body, h.max), func(v []byte) { b.Add(v) })
	*attrs = append(*attrs, slog.Int("events", b.Len()))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		b.Abort()
		return tooLarge(w, h.max)
	case err != nil:
		b.Abort()
		return reply(w, http.StatusBadRequest, Response{ErrCode: CodeMalformed, ErrMessage: err.Error()})
	}
	res, err := b.Commit(ctx)
	var me *ingest.MalformedError
	if errors.As(err, &me) {
		return reply(w, http.StatusBadRequest, Response{ErrCode: CodeMalformed,
			ErrMessage: fmt.Sprintf("element %d of the array is not well-formed JSON; nothing was stored", me.Index)})
	}
	if err != nil {
		*attrs = append(*attrs, slog.String("err", err.Error()))
		return unavailable(w)
	}
	*attrs = append(*attrs, slog.Int("stored", res.Stored), slog.Int("duplicates", res.Duplicates), slog.Int("refused", res.Refused))
	out := batchResponse{EventErrors: make(map[string][]event.Error, len(res.Errors))}
	for _, e := range res.Errors {
		k := e.EID
		if k == "" {
			k = "#" + strconv.Itoa(e.Index)
		}
		out.EventErrors[k] = append(out.EventErrors[k], e.Error)
	}
	return reply(w, http.StatusOK, out)
}

func cutBearer(s string) (string, bool) {
	scheme, rest, ok := strings.Cut(s, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

func tooLarge(w http.ResponseWriter, max int64) int {
	return reply(w, http.StatusRequestEntityTooLarge, Response{ErrCode: CodeTooLarge,
		ErrMessage: fmt.Sprintf("batch over %d bytes; nothing was stored", max)})
}

func unavailable(w http.ResponseWriter) int {
	w.Header().Set("Retry-After", "5")
	return reply(w, http.StatusServiceUnavailable, Response{ErrCode: CodeUnavailable,
		ErrMessage: "the batch was not stored; retry it"})
}

func reply(w http.ResponseWriter, status int, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"err_code":10006,"err_message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return status
}
