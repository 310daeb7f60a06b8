// Package admin is the operator's admin API of the gateway: the PAM writes
// player records into the vault, imports them in bulk, erases them, and asks
// for tokens. It also holds the Go client the CLI uses.
//
// It runs on the operator side and listens apart from the message API, on
// loopback or a management network. Every request carries an admin token
// scoped to one tenant. Requests carry PII; responses, errors and log lines
// never do: they name subjects by brand, user id and pseudonym only.
package admin

import (
	"bufio"
	"bytes"
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

	"github.com/blindpost/blindpost/vault"
)

// Body limits.
const (
	MaxSubjectBody = 1 << 20               // one record
	MaxImportBody  = 100 << 20             // one NDJSON import
	MaxImportLine  = MaxSubjectBody + 4096 // one import line: a record plus brand and user
	maxTokenBody   = 64 << 10
	maxFailedLines = 1000 // import failures listed one by one; the rest are counted
)

// Tokens maps admin tokens to the one tenant each may act for. It keeps
// only SHA-256 hashes of the tokens.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	hash   [sha256.Size]byte
	tenant string
}

// NewTokens builds the token table from token → tenant. Entries with an
// empty token or tenant are dropped: they could never authenticate anyone
// safely. Length and entropy of tokens are the configuration's to check.
func NewTokens(tokens map[string]string) *Tokens {
	t := &Tokens{}
	for tok, tenant := range tokens {
		if tok == "" || tenant == "" {
			continue
		}
		t.entries = append(t.entries, tokenEntry{sha256.Sum256([]byte(tok)), tenant})
	}
	return t
}

// tenant returns the tenant of a presented token. It compares the hash of
// the presented token with every entry, in constant time, and never stops
// early, so timing reveals neither which entry matched nor how much of it.
func (t *Tokens) tenant(presented string) (string, bool) {
	sum := sha256.Sum256([]byte(presented))
	match, idx := 0, 0
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].hash[:])
		idx = subtle.ConstantTimeSelect(eq, i, idx)
		match |= eq
	}
	if match == 0 {
		return "", false
	}
	return t.entries[idx].tenant, true
}

// Error codes of the JSON error body {"error":{"code","message"}}.
const (
	CodeInvalid      = "invalid"
	CodeNotFound     = "not_found"
	CodeUnauthorized = "unauthorized"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

// PutResult is the answer to PUT /v1/subjects/{brand}/{user}.
type PutResult struct {
	Pseudonym string                `json:"pseudonym"`
	Tokens    map[vault.Kind]string `json:"tokens"`
}

// ImportResult is the answer to POST /v1/subjects/import. Failed lists the
// first 1000 failed lines; FailedCount counts them all.
type ImportResult struct {
	Imported    int         `json:"imported"`
	Failed      []LineError `json:"failed"`
	FailedCount int         `json:"failed_count"`
}

// LineError says why one import line (numbered from 1) was not imported.
type LineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

type importLine struct {
	Brand  string        `json:"brand"`
	User   string        `json:"user"`
	Record *vault.Record `json:"record"`
}

type tokenRequest struct {
	Kind  vault.Kind `json:"kind"`
	Value string     `json:"value"`
}

type tokenResponse struct {
	Token string `json:"token"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type handler struct {
	store   vault.Store
	tokens  *Tokens
	onErase func(ctx context.Context, ref vault.Ref) error
	log     *slog.Logger
	mux     *http.ServeMux
}

// NewHandler returns the admin API. onErase runs after the store erased a
// subject (the gateway cancels the subject's queued messages there); it may
// be nil. A nil log discards.
//
//	PUT    /v1/subjects/{brand}/{user}  Record JSON → {"pseudonym","tokens"}
//	DELETE /v1/subjects/{brand}/{user}  → 204
//	POST   /v1/subjects/import          NDJSON {"brand","user","record"} → {"imported","failed"}
//	POST   /v1/tokens                   {"kind","value"} → {"token"}
func NewHandler(store vault.Store, tokens *Tokens, onErase func(ctx context.Context, ref vault.Ref) error, log *slog.Logger) http.Handler {
	if tokens == nil {
		tokens = NewTokens(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{store: store, tokens: tokens, onErase: onErase, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("PUT /v1/subjects/{brand}/{user}", h.putSubject)
	h.mux.HandleFunc("DELETE /v1/subjects/{brand}/{user}", h.eraseSubject)
	h.mux.HandleFunc("POST /v1/subjects/import", h.importSubjects)
	h.mux.HandleFunc("POST /v1/tokens", h.tokenize)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such route")
	})
	return h
}

type ctxKey struct{}

// request is the per-request state: the authenticated tenant and the
// attributes of the one log line each request writes.
type request struct {
	tenant string
	status int
	attrs  []any
}

func state(r *http.Request) *request { return r.Context().Value(ctxKey{}).(*request) }

func (s *request) logAttrs(attrs ...any) { s.attrs = append(s.attrs, attrs...) }

type statusWriter struct {
	http.ResponseWriter
	st *request
}

func (w *statusWriter) WriteHeader(code int) {
	if w.st.status == 0 {
		w.st.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.st.status == 0 {
		w.st.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")

	tenant, ok := h.authenticate(r)
	if !ok {
		hdr.Set("WWW-Authenticate", `Bearer realm="blindpost-admin"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or unknown admin token")
		h.log.Warn("admin request unauthorized", "method", r.Method, "remote", r.RemoteAddr)
		return
	}
	st := &request{tenant: tenant}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, st))
	h.mux.ServeHTTP(&statusWriter{w, st}, r)

	attrs := append([]any{
		"method", r.Method, "route", r.Pattern, "tenant", tenant,
		"status", st.status, "duration", time.Since(start),
	}, st.attrs...)
	level := slog.LevelInfo
	if st.status >= 500 {
		level = slog.LevelError
	}
	h.log.Log(r.Context(), level, "admin request", attrs...)
}

func (h *handler) authenticate(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return h.tokens.tenant(tok)
}

// ref builds the subject of a request from its tenant and path.
func (h *handler) ref(w http.ResponseWriter, r *http.Request) (vault.Ref, bool) {
	ref := vault.Ref{Tenant: state(r).tenant, Brand: r.PathValue("brand"), User: r.PathValue("user")}
	if err := vault.ValidateID(ref.Brand); err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "path brand: "+err.Error())
		return ref, false
	}
	if err := vault.ValidateID(ref.User); err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "path user: "+err.Error())
		return ref, false
	}
	state(r).logAttrs("brand", ref.Brand, "user", ref.User)
	return ref, true
}

func (h *handler) putSubject(w http.ResponseWriter, r *http.Request) {
	ref, ok := h.ref(w, r)
	if !ok {
		return
	}
	var rec vault.Record
	if status, err := decodeBody(w, r, MaxSubjectBody, &rec); err != nil {
		writeError(w, status, CodeInvalid, err.Error())
		return
	}
	sub, err := h.put(r.Context(), ref, rec)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	state(r).logAttrs("pseudonym", sub.Pseudonym)
	writeJSON(w, http.StatusOK, PutResult{Pseudonym: sub.Pseudonym, Tokens: sub.Tokens})
}

func (h *handler) put(ctx context.Context, ref vault.Ref, rec vault.Record) (vault.Subject, error) {
	if rec.Pseudonym != "" {
		return vault.Subject{}, &vault.FieldError{Field: "pseudonym", Reason: "set by the vault, not the caller"}
	}
	return h.store.Put(ctx, ref, rec)
}

func (h *handler) eraseSubject(w http.ResponseWriter, r *http.Request) {
	ref, ok := h.ref(w, r)
	if !ok {
		return
	}
	err := h.store.Erase(r.Context(), ref)
	notFound := errors.Is(err, vault.ErrNotFound)
	if err != nil && !notFound {
		h.fail(w, r, err)
		return
	}
	// Run onErase even when the vault had nothing: a DELETE retried after
	// onErase failed must still cancel the subject's queued messages.
	if h.onErase != nil {
		if err := h.onErase(r.Context(), ref); err != nil {
			state(r).logAttrs("err", err.Error(), "vault_erased", !notFound)
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable,
				"subject erased from the vault, but cancelling its queued messages failed; retry the DELETE")
			return
		}
	}
	if notFound {
		writeError(w, http.StatusNotFound, CodeNotFound, "subject not found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) tokenize(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if status, err := decodeBody(w, r, maxTokenBody, &req); err != nil {
		writeError(w, status, CodeInvalid, err.Error())
		return
	}
	if !req.Kind.Valid() {
		writeError(w, http.StatusBadRequest, CodeInvalid, `field "kind": want email, phone or tg`)
		return
	}
	state(r).logAttrs("kind", string(req.Kind))
	tok, err := h.store.Tokenize(r.Context(), state(r).tenant, req.Kind, req.Value)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{Token: tok})
}

func (h *handler) importSubjects(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > MaxImportBody {
		writeError(w, http.StatusRequestEntityTooLarge, CodeInvalid, "import body over "+strconv.Itoa(MaxImportBody)+" bytes")
		return
	}
	tenant := state(r).tenant
	br := bufio.NewReaderSize(http.MaxBytesReader(w, r.Body, MaxImportBody), 64<<10)
	res := ImportResult{Failed: []LineError{}}
	fail := func(line int, msg string) {
		res.FailedCount++
		if len(res.Failed) < maxFailedLines {
			res.Failed = append(res.Failed, LineError{Line: line, Error: msg})
		}
	}
	for n := 1; ; n++ {
		line, tooLong, readErr := readLine(br, MaxImportLine)
		var mbe *http.MaxBytesError
		switch {
		case errors.As(readErr, &mbe):
			state(r).logAttrs("imported", res.Imported, "failed", res.FailedCount)
			writeError(w, http.StatusRequestEntityTooLarge, CodeInvalid, fmt.Sprintf(
				"import body over %d bytes at line %d; %d lines before it imported, retry the rest", MaxImportBody, n, res.Imported))
			return
		case readErr != nil && readErr != io.EOF:
			writeError(w, http.StatusBadRequest, CodeInvalid, "reading import body failed")
			return
		}
		if tooLong {
			fail(n, "line over "+strconv.Itoa(MaxImportLine)+" bytes")
		} else if line = bytes.TrimSpace(line); len(line) > 0 {
			err := h.importLine(r.Context(), tenant, line)
			switch {
			case err == nil:
				res.Imported++
			case errors.Is(err, vault.ErrUnavailable) || r.Context().Err() != nil:
				state(r).logAttrs("imported", res.Imported, "failed", res.FailedCount, "err", err.Error())
				writeError(w, http.StatusServiceUnavailable, CodeUnavailable, fmt.Sprintf(
					"vault unavailable at line %d; %d lines before it imported, retry the import", n, res.Imported))
				return
			default:
				if errors.Is(err, vault.ErrCorrupt) || !errors.Is(err, vault.ErrInvalid) {
					state(r).logAttrs("line", n, "err", err.Error())
				}
				fail(n, publicMessage(err))
			}
		}
		clear(line)
		if readErr == io.EOF {
			break
		}
	}
	state(r).logAttrs("imported", res.Imported, "failed", res.FailedCount)
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) importLine(ctx context.Context, tenant string, line []byte) error {
	var in importLine
	if err := decodeStrict(line, &in); err != nil {
		return fmt.Errorf("%w: %w", vault.ErrInvalid, err)
	}
	if err := vault.ValidateID(in.Brand); err != nil {
		return fmt.Errorf("brand: %w", err)
	}
	if err := vault.ValidateID(in.User); err != nil {
		return fmt.Errorf("user: %w", err)
	}
	if in.Record == nil {
		return fmt.Errorf(`%w: missing "record"`, vault.ErrInvalid)
	}
	_, err := h.put(ctx, vault.Ref{Tenant: tenant, Brand: in.Brand, User: in.User}, *in.Record)
	return err
}

// readLine reads one line of at most max bytes. A longer line is consumed
// and reported as tooLong, so the next line can still be read.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > max {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err != bufio.ErrBufferFull {
			return line, tooLong, err
		}
	}
}

// fail answers with the error's kind. Messages come from errors the vault
// promises never carry PII; anything unexpected is "internal" and logged.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, vault.ErrInvalid):
		writeError(w, http.StatusBadRequest, CodeInvalid, publicMessage(err))
	case errors.Is(err, vault.ErrNotFound):
		writeError(w, http.StatusNotFound, CodeNotFound, "subject not found")
	case errors.Is(err, vault.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		state(r).logAttrs("err", err.Error())
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "vault unavailable, retry later")
	default:
		state(r).logAttrs("err", err.Error())
		writeError(w, http.StatusInternalServerError, CodeInternal, "internal error")
	}
}

// publicMessage is what a client may read about an error.
func publicMessage(err error) string {
	var fe *vault.FieldError
	switch {
	case errors.As(err, &fe):
		return fe.Error()
	case errors.Is(err, vault.ErrCorrupt):
		return "stored record cannot be opened"
	case errors.Is(err, vault.ErrInvalid):
		return err.Error()
	}
	return "internal error"
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
