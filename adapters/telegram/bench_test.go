package telegram_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/blindpost/blindpost/adapters/telegram"
)

// benchBot answers every sendMessage like Telegram, without bookkeeping, so
// the numbers are the client's: encoding, one loopback round trip over a
// reused connection, decoding.
func benchBot(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"result":{"message_id":42,"date":1700000000,"chat":{"id":5550100001,"type":"private"},"text":"echo"}}`)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func BenchmarkSend(b *testing.B) {
	for _, bc := range []struct {
		name string
		text string
		mode string
	}{
		{"short", "Hi Fake Player, your weekly bonus is waiting: https://example.com/bonus", ""},
		{"short_html", "<b>Hi Fake Player</b>, your weekly bonus is <a href=\"https://example.com/bonus\">waiting</a> &amp; ready", telegram.ParseModeHTML},
		{"10k_split_3", strings.Repeat("Lorem ipsum dolor sit amet, fake player.\n", 250), ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := benchBot(b)
			c, err := telegram.New(telegram.Config{BaseURL: srv.URL, Token: fakeToken}, srv.Client())
			if err != nil {
				b.Fatal(err)
			}
			msg := telegram.Message{ChatID: fakeChat, Text: bc.text, ParseMode: bc.mode}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
