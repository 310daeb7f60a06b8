package httpx

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/adapters"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0}, {"120", 2 * time.Minute}, {" 5 ", 5 * time.Second}, {"0", 0}, {"-3", 0}, {"soon", 0},
		{"86400", 24 * time.Hour}, {"86401", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := RetryAfter(tt.v, now); got != tt.want {
			t.Errorf("RetryAfter(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestTransportErrorDropsTheURL(t *testing.T) {
	expired, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	const secretURL = "https://api.provider.test/send?key=SECRET-KEY-123"
	for _, tt := range []struct {
		ctx  context.Context
		err  error
		code string
	}{
		{context.Background(), errors.New("connection refused"), "x_network"},
		{expired, context.DeadlineExceeded, "x_timeout"},
		{cancelled, context.Canceled, "x_canceled"},
	} {
		err := TransportError(tt.ctx, "x", &url.Error{Op: "Post", URL: secretURL, Err: tt.err})
		if adapters.Code(err) != tt.code || !errors.Is(err, adapters.ErrTemporary) {
			t.Errorf("%v: code %q temporary=%v, want %s", tt.err, adapters.Code(err), errors.Is(err, adapters.ErrTemporary), tt.code)
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "provider.test") {
			t.Errorf("error quotes the URL: %v", err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true, "127.8.9.10": true,
		"10.0.0.1": false, "api.provider.test": false, "": false} {
		if IsLoopback(host) != want {
			t.Errorf("IsLoopback(%q) = %v", host, !want)
		}
	}
}
