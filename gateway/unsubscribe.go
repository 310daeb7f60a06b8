package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blindpost/blindpost/audit"
	"github.com/blindpost/blindpost/gateway/queue"
	"github.com/blindpost/blindpost/vault"
)

// One-click unsubscribe (RFC 8058).
//
// Every marketing email carries List-Unsubscribe with a link to the
// gateway's own unsubscribe listener, and List-Unsubscribe-Post, so a mail
// client can unsubscribe the player with one POST. The link holds a sealed
// token (XChaCha20-Poly1305 under a key only the gateway has): the subject
// it is for, the message that carried it, and an expiry. It is opaque to
// everyone else, cannot be forged or altered, and names no person: the
// subject is the PAM's user id, and the gateway looks the record up itself.
//
// A GET shows a page with a button and changes nothing, because mail
// scanners follow links; only a POST unsubscribes. Unsubscribing sets the
// player's core_is_email_disabled flag in the vault, writes an opt_out
// record to the audit log, and reports "opted_out" to the core for the
// message that carried the link.

// unsubscribeVersion starts every token's associated data, so a token of a
// later format is never read as this one.
const unsubscribeAD = "blindpost unsubscribe v1"

// unsubscribeClaims is what a token carries.
type unsubscribeClaims struct {
	Tenant string `json:"t"`
	Brand  string `json:"b"`
	User   string `json:"u"`
	MsgID  string `json:"m"`
	ExtID  string `json:"x"`
	Exp    int64  `json:"e"` // unix seconds
}

var errUnsubscribeToken = errors.New("unsubscribe link is not valid")

// unsubscriber seals and opens tokens.
type unsubscriber struct {
	key     []byte
	baseURL string
	ttl     time.Duration
}

// loadUnsubscribeKey reads the 32-byte key, creating it on first start.
func loadUnsubscribeKey(path string, create bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && create {
		return newUnsubscribeKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read unsubscribe key: %w", err)
	}
	if len(b) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("unsubscribe key %s: want %d bytes, got %d", path, chacha20poly1305.KeySize, len(b))
	}
	return b, nil
}

// GenerateUnsubscribeKey writes a new key for sealing unsubscribe links to
// path (mode 0600), refusing to overwrite one: the key every node of a
// cluster reads from public.key_file.
func GenerateUnsubscribeKey(path string) error {
	_, err := newUnsubscribeKey(path)
	return err
}

func newUnsubscribeKey(path string) ([]byte, error) {
	b := make([]byte, chacha20poly1305.KeySize)
	rand.Read(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create unsubscribe key: %w", err)
	}
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write unsubscribe key: %w", err)
	}
	return b, nil
}

// link returns the unsubscribe URL for a message to ref.
func (u *unsubscriber) link(ref vault.Ref, msgID, extID string, now time.Time) (string, error) {
	pt, err := json.Marshal(unsubscribeClaims{Tenant: ref.Tenant, Brand: ref.Brand, User: ref.User,
		MsgID: msgID, ExtID: extID, Exp: now.Add(u.ttl).Unix()})
	if err != nil {
		return "", err
	}
	aead, err := chacha20poly1305.NewX(u.key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	rand.Read(nonce)
	sealed := aead.Seal(nonce, nonce, pt, []byte(unsubscribeAD))
	return strings.TrimRight(u.baseURL, "/") + "/u/" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// open returns the claims of a token, or errUnsubscribeToken for anything
// forged, altered, truncated or expired.
func (u *unsubscriber) open(token string, now time.Time) (unsubscribeClaims, error) {
	var c unsubscribeClaims
	if len(token) > 2048 {
		return c, errUnsubscribeToken
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	aead, aerr := chacha20poly1305.NewX(u.key)
	if err != nil || aerr != nil || len(b) < aead.NonceSize()+aead.Overhead() {
		return c, errUnsubscribeToken
	}
	pt, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte(unsubscribeAD))
	if err != nil || json.Unmarshal(pt, &c) != nil || c.Tenant == "" || c.User == "" {
		return unsubscribeClaims{}, errUnsubscribeToken
	}
	if now.Unix() > c.Exp {
		return unsubscribeClaims{}, errUnsubscribeToken
	}
	return c, nil
}

var unsubscribePage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}button{font:inherit;padding:.5rem 1rem}</style>
</head><body><h1>{{.Title}}</h1><p>{{.Text}}</p>
{{if .Form}}<form method="post"><button type="submit">Unsubscribe</button></form>{{end}}
</body></html>
`))

type pageData struct {
	Title, Text string
	Form        bool
}

func writePage(w http.ResponseWriter, status int, p pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	unsubscribePage.Execute(w, p)
}

// unsubscribeHandler serves GET and POST /u/{token}.
func (g *Gateway) unsubscribeHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /u/{token}", func(w http.ResponseWriter, r *http.Request) {
		if _, err := g.unsub.open(r.PathValue("token"), g.now()); err != nil {
			writePage(w, http.StatusBadRequest, pageData{Title: "Link not valid", Text: "This unsubscribe link is not valid or has expired. Use the link in a more recent email."})
			return
		}
		writePage(w, http.StatusOK, pageData{Title: "Unsubscribe", Text: "Stop receiving marketing emails from us?", Form: true})
	})
	mux.HandleFunc("POST /u/{token}", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		r.ParseForm() // RFC 8058's body, List-Unsubscribe=One-Click, or the page's empty form: both unsubscribe
		c, err := g.unsub.open(r.PathValue("token"), g.now())
		if err != nil {
			g.metrics.unsubscribes.WithLabelValues("invalid").Inc()
			writePage(w, http.StatusBadRequest, pageData{Title: "Link not valid", Text: "This unsubscribe link is not valid or has expired. Use the link in a more recent email."})
			return
		}
		source := "unsubscribe_page"
		if r.PostForm.Get("List-Unsubscribe") == "One-Click" {
			source = "list_unsubscribe"
		}
		if err := g.optOut(r.Context(), c, source); err != nil {
			g.metrics.unsubscribes.WithLabelValues("error").Inc()
			g.log.Error("unsubscribe failed", "tenant", c.Tenant, "ext_message_id", c.ExtID, "err", err)
			writePage(w, http.StatusServiceUnavailable, pageData{Title: "Please try again", Text: "We could not record your choice just now. Please try again in a few minutes."})
			return
		}
		g.metrics.unsubscribes.WithLabelValues("ok").Inc()
		writePage(w, http.StatusOK, pageData{Title: "Unsubscribed", Text: "You will no longer receive marketing emails from us."})
	})
	return mux
}

// optOut sets the player's email opt-out flag, puts it on record, and
// reports it to the core. Doing it twice changes nothing the second time.
func (g *Gateway) optOut(ctx context.Context, c unsubscribeClaims, source string) error {
	const flag = "core_is_email_disabled"
	ref := vault.Ref{Tenant: c.Tenant, Brand: c.Brand, User: c.User}
	rec, err := g.store.Resolve(ctx, ref)
	if errors.Is(err, vault.ErrNotFound) {
		return nil // erased since: there is nobody left to mail
	}
	if err != nil {
		return fmt.Errorf("resolve: %w", err)
	}
	if rec.OptOuts[flag] {
		return nil
	}
	if rec.OptOuts == nil {
		rec.OptOuts = map[string]bool{}
	}
	if rec.OptOutSince == nil {
		rec.OptOutSince = map[string]time.Time{}
	}
	now := g.now().UTC()
	rec.OptOuts[flag], rec.OptOutSince[flag] = true, now
	if _, err := g.store.Put(ctx, ref, rec); err != nil {
		return fmt.Errorf("update record: %w", err)
	}
	if err := g.appendAudit(ctx, newRecord(audit.KindOptOut, c.Tenant, audit.OptOutData{Brand: c.Brand, Flag: flag, Source: source},
		func(r *audit.Record) { r.MsgID, r.ExtID, r.Pseudonym = c.MsgID, c.ExtID, rec.Pseudonym })); err != nil {
		return err
	}
	g.log.Info("player opted out", "tenant", c.Tenant, "pseudonym", rec.Pseudonym, "ext_message_id", c.ExtID, "source", source)
	return g.queue.AddEvent(ctx, queue.Event{Tenant: c.Tenant, MsgID: c.MsgID, ExtMessageID: c.ExtID,
		Status: StatusOptedOut, Reason: source, Time: now})
}
