package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/blindpost/blindpost/core/store"
)

// Tokens are the admin bearer tokens. Only their SHA-256 hashes are kept,
// and a presented token is compared with every one in constant time.
type Tokens struct {
	hashes [][sha256.Size]byte
}

// MinTokenLen is the shortest admin token accepted.
const MinTokenLen = 32

// ParseTokens reads admin tokens from an environment variable's value:
// comma- or newline-separated, so a new one can be added before the old
// one is removed. An empty value gives no tokens (the API then refuses
// every request).
func ParseTokens(raw string) (*Tokens, error) {
	return NewTokens(strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }))
}

// NewTokens builds the token table. Blank entries are skipped; a token
// shorter than MinTokenLen is an error.
func NewTokens(tokens []string) (*Tokens, error) {
	t := &Tokens{}
	for _, tok := range tokens {
		if tok = strings.TrimSpace(tok); tok == "" {
			continue
		}
		if len(tok) < MinTokenLen {
			return nil, fmt.Errorf("admin token shorter than %d characters", MinTokenLen)
		}
		t.hashes = append(t.hashes, sha256.Sum256([]byte(tok)))
	}
	return t, nil
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.hashes) }

// valid compares the presented token's hash with every entry, without
// stopping early, so timing reveals nothing of which entry or how much of
// it matched.
func (t *Tokens) valid(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	match := 0
	for i := range t.hashes {
		match |= subtle.ConstantTimeCompare(sum[:], t.hashes[i][:])
	}
	return match == 1 && presented != ""
}

// Error codes of the JSON error body {"error":{"code","message"}}.
const (
	CodeInvalid      = "invalid"
	CodeNotFound     = "not_found"
	CodeExists       = "exists"
	CodeUnauthorized = "unauthorized"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

const maxBody = 64 << 10

type handler struct {
	a      *Admin
	tokens *Tokens
	log    *slog.Logger
	mux    *http.ServeMux
}

// NewHandler returns the admin API. Every request needs
// "Authorization: Bearer <admin token>". A nil log discards.
//
//	GET    /v1/labels                          → [label]
//	POST   /v1/labels                          {"id","name"} → 201 label (409 if taken)
//	GET    /v1/labels/{label}                  → label
//	POST   /v1/labels/{label}/brands           {"brand"} → label
//	PUT    /v1/labels/{label}/firewall         {"mode": "reject"|"strip"} → label
//	POST   /v1/labels/{label}/event-types      {"name"} → label
//	GET    /v1/labels/{label}/keys             → [key info]
//	POST   /v1/labels/{label}/keys             → 201 {"key","info"}: the secret, this once
//	POST   /v1/labels/{label}/keys/rotate      → 201 {"key","info","previous"}: old keys stay valid
//	DELETE /v1/labels/{label}/keys/{id}        → 204
//	GET    /v1/labels/{label}/rejections?limit=N → [{"eid","reason","path",…}]
//	POST   /v1/labels/{label}/token-pairs      multipart pairs, sig → token pairs applied (tokenpairs.go)
//	GET    /api/players/{brand}/{user}?label=L → player state
func NewHandler(a *Admin, tokens *Tokens, log *slog.Logger) http.Handler {
	if tokens == nil {
		tokens = &Tokens{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{a: a, tokens: tokens, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /v1/labels", h.labels)
	h.mux.HandleFunc("POST /v1/labels", h.createLabel)
	h.mux.HandleFunc("GET /v1/labels/{label}", h.label)
	h.mux.HandleFunc("POST /v1/labels/{label}/brands", h.addBrand)
	h.mux.HandleFunc("PUT /v1/labels/{label}/firewall", h.setFirewall)
	h.mux.HandleFunc("POST /v1/labels/{label}/event-types", h.addType)
	h.mux.HandleFunc("GET /v1/labels/{label}/keys", h.keys)
	h.mux.HandleFunc("POST /v1/labels/{label}/keys", h.createKey)
	h.mux.HandleFunc("POST /v1/labels/{label}/keys/rotate", h.rotateKey)
	h.mux.HandleFunc("DELETE /v1/labels/{label}/keys/{id}", h.revokeKey)
	h.mux.HandleFunc("GET /v1/labels/{label}/rejections", h.rejections)
	h.mux.HandleFunc("POST /v1/labels/{label}/token-pairs", h.tokenPairs)
	h.mux.HandleFunc("GET /api/players/{brand}/{user}", h.player)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such route")
	})
	return h
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (tokenpairs.go
// extends its deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if h.tokens.Len() == 0 {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "admin API disabled: no admin token configured")
		return
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || !h.tokens.valid(strings.TrimSpace(tok)) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="blindpost-core-admin"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or unknown admin token")
		h.log.Warn("admin request unauthorized", "method", r.Method, "remote", r.RemoteAddr)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	h.mux.ServeHTTP(sw, r)
	level := slog.LevelInfo
	if sw.status >= 500 {
		level = slog.LevelError
	}
	label := r.PathValue("label")
	if label == "" {
		label = r.URL.Query().Get("label")
	}
	if !ValidLabelID(label) {
		label = "" // only names a label could have reach the log
	}
	h.log.Log(r.Context(), level, "admin request", "method", r.Method, "route", r.Pattern,
		"label", label, "status", sw.status, "duration", time.Since(start))
}

func (h *handler) labels(w http.ResponseWriter, r *http.Request) {
	ls, err := h.a.Labels(r.Context())
	h.answer(w, r, http.StatusOK, ls, err)
}

func (h *handler) createLabel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	l, err := h.a.CreateLabel(r.Context(), req.ID, req.Name)
	h.answer(w, r, http.StatusCreated, l, err)
}

func (h *handler) label(w http.ResponseWriter, r *http.Request) {
	l, err := h.a.Label(r.Context(), r.PathValue("label"))
	h.answer(w, r, http.StatusOK, l, err)
}

func (h *handler) addBrand(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Brand string `json:"brand"`
	}
	if !decode(w, r, &req) {
		return
	}
	l, err := h.a.AddBrand(r.Context(), r.PathValue("label"), req.Brand)
	h.answer(w, r, http.StatusOK, l, err)
}

func (h *handler) setFirewall(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Mode string `json:"mode"`
	}
	if !decode(w, r, &req) {
		return
	}
	l, err := h.a.SetFirewallMode(r.Context(), r.PathValue("label"), req.Mode)
	h.answer(w, r, http.StatusOK, l, err)
}

func (h *handler) addType(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decode(w, r, &req) {
		return
	}
	l, err := h.a.RegisterEventType(r.Context(), r.PathValue("label"), req.Name)
	h.answer(w, r, http.StatusOK, l, err)
}

func (h *handler) keys(w http.ResponseWriter, r *http.Request) {
	ks, err := h.a.Keys(r.Context(), r.PathValue("label"))
	h.answer(w, r, http.StatusOK, ks, err)
}

func (h *handler) createKey(w http.ResponseWriter, r *http.Request) {
	k, err := h.a.CreateKey(r.Context(), r.PathValue("label"))
	h.answer(w, r, http.StatusCreated, k, err)
}

func (h *handler) rotateKey(w http.ResponseWriter, r *http.Request) {
	k, err := h.a.RotateKey(r.Context(), r.PathValue("label"))
	h.answer(w, r, http.StatusCreated, k, err)
}

func (h *handler) revokeKey(w http.ResponseWriter, r *http.Request) {
	err := h.a.RevokeKey(r.Context(), r.PathValue("label"), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) rejections(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxRejections {
			writeError(w, http.StatusBadRequest, CodeInvalid, "limit: want 1.."+strconv.Itoa(store.MaxRejections))
			return
		}
		limit = n
	}
	rs, err := h.a.Rejections(r.Context(), r.PathValue("label"), limit)
	h.answer(w, r, http.StatusOK, rs, err)
}

func (h *handler) player(w http.ResponseWriter, r *http.Request) {
	label := r.URL.Query().Get("label")
	if label == "" {
		writeError(w, http.StatusBadRequest, CodeInvalid, "label: the query parameter is required")
		return
	}
	p, err := h.a.Player(r.Context(), label, r.PathValue("brand"), r.PathValue("user"))
	h.answer(w, r, http.StatusOK, p, err)
}

func (h *handler) answer(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

// fail answers with the error's kind. Messages of ErrInvalid and
// ErrNotFound are written by this package and name fields only; anything
// else is logged and answered as internal.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, CodeInvalid, strings.TrimPrefix(err.Error(), "admin: "))
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, CodeNotFound, strings.TrimPrefix(err.Error(), "admin: "))
	case errors.Is(err, ErrExists):
		writeError(w, http.StatusConflict, CodeExists, strings.TrimPrefix(err.Error(), "admin: "))
	case errors.Is(err, store.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "store unavailable, retry later")
	default:
		h.log.Error("admin request failed", "route", r.Pattern, "label", r.PathValue("label"), "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
	}
}

// decode reads a small JSON object strictly. Its errors never quote the
// body.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data")
		}
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, CodeInvalid, "body too large")
		return false
	}
	writeError(w, http.StatusBadRequest, CodeInvalid, "want one JSON object with the documented fields")
	return false
}

type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{apiError{Code: code, Message: msg}})
}
