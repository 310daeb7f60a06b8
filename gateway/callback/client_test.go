package callback_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/callback"
)

func payload() callback.Payload {
	return callback.Payload{
		Tenant: "t1", ID: "m1", ExtMessageID: "ext_1", Status: "sent", Reason: "ok",
		DecisionID: "dec_1", Seq: 7, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Checkpoint: "gateway.example.com/log\n42\nroot\n\n— gateway sig\n",
	}
}

// coreServer stands in for the core: it verifies every callback with pub.
func coreServer(t *testing.T, pub ed25519.PublicKey, now func() time.Time, got chan<- callback.Payload) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := callback.Verify(pub, r.Header, body, now(), 0); err != nil {
			t.Errorf("core: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var p callback.Payload
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Errorf("core: decode: %v", err)
		}
		got <- p
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPostIsSignedAndVerifiable(t *testing.T) {
	pub, priv := mustKey(t)
	now := func() time.Time { return time.Unix(1_800_000_000, 0) }
	got := make(chan callback.Payload, 1)
	srv := coreServer(t, pub, now, got)

	c := callback.NewClient(priv, callback.ClientOptions{AllowPrivate: true, Now: now})
	if err := c.Post(context.Background(), srv.URL+"/callbacks", payload()); err != nil {
		t.Fatalf("Post: %v", err)
	}
	p := <-got
	want := payload()
	want.Type = callback.TypeMessageStatus
	if p != want {
		t.Fatalf("core received %+v, want %+v", p, want)
	}
}

func TestPayloadJSONIsSnakeCase(t *testing.T) {
	b, err := json.Marshal(payload())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"type"`, `"tenant"`, `"id"`, `"ext_message_id"`, `"status"`, `"reason"`,
		`"decision_id"`, `"seq"`, `"time"`, `"checkpoint"`} {
		if !strings.Contains(string(b), k+":") {
			t.Errorf("payload JSON %s lacks %s", b, k)
		}
	}
}

func TestRetriedCallbackKeepsItsWebhookID(t *testing.T) {
	_, priv := mustKey(t)
	seen := make(chan string, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get(callback.HeaderID)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := callback.NewClient(priv, callback.ClientOptions{AllowPrivate: true})
	other := payload()
	other.Tenant = "t2"
	var ids []string
	for _, p := range []callback.Payload{payload(), payload(), other} {
		c.Post(context.Background(), srv.URL, p)
		ids = append(ids, <-seen)
	}
	if len(ids) != 3 || ids[0] != ids[1] || ids[0] == ids[2] || strings.Contains(ids[0], ".") {
		t.Fatalf("webhook ids = %q: want stable per (tenant, seq), distinct across tenants, without '.'", ids)
	}
}

func TestPostRefusesInternalTargets(t *testing.T) {
	_, priv := mustKey(t)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]

	c := callback.NewClient(priv, callback.ClientOptions{Timeout: 2 * time.Second})
	for _, u := range []string{
		srv.URL,                      // 127.0.0.1
		"http://localhost" + port,    // a name that resolves to loopback
		"http://[::1]" + port,        // IPv6 loopback
		"http://10.0.0.1" + port,     // RFC 1918
		"http://169.254.169.254/",    // link-local: cloud metadata
		"http://[::ffff:127.0.0.1]/", // IPv4-mapped loopback
		"http://100.64.0.1/",         // CGNAT
	} {
		err := c.Post(context.Background(), u, payload())
		if !errors.Is(err, callback.ErrForbiddenAddress) || !errors.Is(err, callback.ErrPermanent) {
			t.Errorf("Post(%s) = %v, want ErrForbiddenAddress and ErrPermanent", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "http://") {
			t.Errorf("error names the URL: %v", err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("internal server was called %d times", hits.Load())
	}
}

func TestPostClassifiesFailures(t *testing.T) {
	_, priv := mustKey(t)
	tests := []struct {
		name   string
		status int
		want   error
	}{
		{"500 is retryable", http.StatusInternalServerError, callback.ErrRetryable},
		{"503 is retryable", http.StatusServiceUnavailable, callback.ErrRetryable},
		{"429 is retryable", http.StatusTooManyRequests, callback.ErrRetryable},
		{"408 is retryable", http.StatusRequestTimeout, callback.ErrRetryable},
		{"400 is permanent", http.StatusBadRequest, callback.ErrPermanent},
		{"401 is permanent", http.StatusUnauthorized, callback.ErrPermanent},
		{"redirect is not followed", http.StatusFound, callback.ErrPermanent},
		{"200 is success", http.StatusOK, nil},
		{"204 is success", http.StatusNoContent, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) > 1 {
					t.Error("redirect followed")
				}
				if tt.status == http.StatusFound {
					http.Redirect(w, r, "/elsewhere", tt.status)
					return
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			c := callback.NewClient(priv, callback.ClientOptions{AllowPrivate: true})
			err := c.Post(context.Background(), srv.URL, payload())
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Post = %v, want nil", err)
				}
				return
			}
			other := callback.ErrPermanent
			if tt.want == callback.ErrPermanent {
				other = callback.ErrRetryable
			}
			var se *callback.StatusError
			if !errors.Is(err, tt.want) || errors.Is(err, other) || !errors.As(err, &se) || se.Code != tt.status {
				t.Fatalf("Post = %v, want %v with status %d", err, tt.want, tt.status)
			}
		})
	}

	t.Run("unreachable server is retryable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		c := callback.NewClient(priv, callback.ClientOptions{AllowPrivate: true})
		if err := c.Post(context.Background(), url, payload()); !errors.Is(err, callback.ErrRetryable) {
			t.Fatalf("Post = %v, want ErrRetryable", err)
		}
	})
	t.Run("bad URL is permanent", func(t *testing.T) {
		c := callback.NewClient(priv, callback.ClientOptions{AllowPrivate: true})
		for _, u := range []string{"ftp://example.com/", "/relative", "::"} {
			if err := c.Post(context.Background(), u, payload()); !errors.Is(err, callback.ErrPermanent) {
				t.Errorf("Post(%q) = %v, want ErrPermanent", u, err)
			}
		}
	})
}
