package push_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/blindpost/blindpost/adapters/push"
)

// benchGateway accepts every push without bookkeeping, so the numbers are
// the client's: encoding, one loopback round trip over a reused
// connection, draining the answer.
func benchGateway(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"status":"queued"}`)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchMessage() push.Message {
	m := fakeMessage()
	m.Action = "https://example.com/offer?a=1&b=2"
	m.IconURL = "https://example.com/icon.png"
	m.Extra = map[string]string{"button1": "Claim", "engagement_uid": "f56883c4-0000-4000-8000-000000000001"}
	return m
}

func BenchmarkSend(b *testing.B) {
	srv := benchGateway(b)
	c, err := push.New(push.Config{URL: srv.URL + "/push", Authorization: fakeAuth}, srv.Client())
	if err != nil {
		b.Fatal(err)
	}
	m := benchMessage()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendAll3Tokens fans out to three devices. http.Transport keeps
// only 2 idle connections per host by default, which makes the third
// request dial every time; the gateway's push transport should keep at
// least sendAllParallel (4), as this one does.
func BenchmarkSendAll3Tokens(b *testing.B) {
	srv := benchGateway(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	b.Cleanup(tr.CloseIdleConnections)
	c, err := push.New(push.Config{URL: srv.URL + "/push", Authorization: fakeAuth}, &http.Client{Transport: tr})
	if err != nil {
		b.Fatal(err)
	}
	m := benchMessage()
	tokens := []push.Token{{fakeToken, "ANDROID"}, {fakeToken2, "IOS"}, {fakeToken3, "DESKTOP"}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.SendAll(ctx, m, tokens); err != nil {
			b.Fatal(err)
		}
	}
}
