package twilio

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/blindpost/blindpost/adapters/internal/httpx"

	"github.com/blindpost/blindpost/adapters"
	"github.com/blindpost/blindpost/adapters/sms"
)

// transientCodes are Twilio error codes that come with a 4xx status but
// describe a full queue or a rate limit, which a later attempt may not
// meet.
var transientCodes = map[int]bool{
	14107: true, // message rate limit exceeded
	20429: true, // too many requests
	21611: true, // the From number's queue is full
	30001: true, // queue overflow
	63017: true, // account rate limit exceeded
	63018: true, // sender rate limit exceeded
}

// Send asks Twilio to send m and returns Twilio's id for it (MessageSid)
// and the number of segments Twilio counted (0 when a Messaging Service
// has yet to pick a sender).
//
// A 2xx answer is success even when its body cannot be read: the message
// is with Twilio, a retry would send it twice, and the receipt still
// matches by Ref. Failures are *adapters.Error: 429, 5xx, network errors and
// time-outs are temporary (with Twilio's Retry-After, if any); other
// answers are permanent unless their Twilio code is a rate limit.
//
// A time-out after the request went out may hide a message Twilio
// accepted: Twilio's Messages API has no idempotency key, so a retry may
// then send it twice.
func (c *Client) Send(ctx context.Context, m sms.Message) (sms.Result, error) {
	if m.To == "" || m.Body == "" {
		return sms.Result{}, adapters.Permanent("invalid_message", fmt.Errorf("twilio: send: no recipient or no text: %w", ErrInvalidMessage))
	}
	form := url.Values{"To": {m.To}, "Body": {m.Body}}
	if from := cmp.Or(m.From, c.cfg.From); from != "" {
		form["From"] = []string{from}
	}
	if c.cfg.MessagingServiceSID != "" {
		form["MessagingServiceSid"] = []string{c.cfg.MessagingServiceSID}
	}
	if cb := c.callbackFor(m.Ref); cb != "" {
		form["StatusCallback"] = []string{cb}
	}

	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		// The endpoint was checked by New; this is a bug, not a message.
		return sms.Result{}, adapters.Permanent("invalid_request", errors.New("twilio: send: cannot build request"))
	}
	req.SetBasicAuth(c.cfg.AccountSID, c.cfg.AuthToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	resp, err := c.http.Do(req)
	if err != nil {
		return sms.Result{}, httpx.TransportError(ctx, "twilio", err)
	}
	defer func() {
		// Drain what is left (within bounds) so the connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		resp.Body.Close()
	}()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		var msg struct {
			SID         string  `json:"sid"`
			Status      string  `json:"status"`
			NumSegments flexInt `json:"num_segments"`
			ErrorCode   flexInt `json:"error_code"`
		}
		if readErr != nil || json.Unmarshal(body, &msg) != nil {
			return sms.Result{}, nil
		}
		if msg.Status == "failed" || msg.Status == "undelivered" {
			code := "twilio_failed"
			if msg.ErrorCode > 0 {
				code = "twilio_" + strconv.Itoa(int(msg.ErrorCode))
			}
			return sms.Result{ProviderID: msg.SID}, adapters.Permanent(code, fmt.Errorf("twilio: send: message %s: %w", msg.Status, ErrRejected))
		}
		return sms.Result{ProviderID: msg.SID, Parts: int(msg.NumSegments)}, nil
	}
	return sms.Result{}, c.failure(resp, body)
}

// failure classifies a non-2xx answer. Only Twilio's numeric code is read
// from the body: its message and more_info may hold the recipient.
func (c *Client) failure(resp *http.Response, body []byte) error {
	var te struct {
		Code flexInt `json:"code"`
	}
	code := "http_" + strconv.Itoa(resp.StatusCode)
	if json.Unmarshal(body, &te) == nil && te.Code > 0 {
		code = "twilio_" + strconv.Itoa(int(te.Code))
	}
	e := &adapters.Error{
		Code:      code,
		Temporary: resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 || transientCodes[int(te.Code)],
		Err:       fmt.Errorf("twilio: send: HTTP %d: %w", resp.StatusCode, ErrRejected),
	}
	if e.Temporary {
		e.RetryAfter = httpx.RetryAfter(resp.Header.Get("Retry-After"), c.cfg.Now())
	}
	return e
}

// flexInt reads a JSON number, a string holding one (Twilio sends
// num_segments as "1"), or null as 0.
type flexInt int

func (n *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		*n = 0
		return nil
	}
	i, err := strconv.Atoi(string(b))
	if err != nil {
		*n = 0
		return nil // a field we cannot read is not worth failing a send over
	}
	*n = flexInt(i)
	return nil
}
