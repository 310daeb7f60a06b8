package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/blindpost/blindpost/vault"
)

// ErrUnauthorized matches an *Error for a missing or unknown admin token.
var ErrUnauthorized = errors.New("admin: unauthorized")

// Client calls the admin API, for the CLI and for tests.
type Client struct {
	BaseURL string       // e.g. "http://127.0.0.1:8081"
	Token   string       // admin token of one tenant
	HTTP    *http.Client // nil means http.DefaultClient
}

// Error is an error answer of the admin API. It matches vault.ErrInvalid,
// vault.ErrNotFound, vault.ErrUnavailable or ErrUnauthorized by its code.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("admin: %d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Is(target error) bool {
	switch e.Code {
	case CodeInvalid:
		return target == vault.ErrInvalid
	case CodeNotFound:
		return target == vault.ErrNotFound
	case CodeUnavailable:
		return target == vault.ErrUnavailable
	case CodeUnauthorized:
		return target == ErrUnauthorized
	}
	return false
}

// Put creates or replaces the record of a subject.
func (c *Client) Put(ctx context.Context, brand, user string, rec vault.Record) (*PutResult, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	defer clear(body)
	var res PutResult
	if err := c.do(ctx, http.MethodPut, subjectPath(brand, user), "application/json", bytes.NewReader(body), &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Import sends NDJSON lines {"brand","user","record"} read from r. Lines
// that fail are listed in the result; the error is for the request as a
// whole.
func (c *Client) Import(ctx context.Context, r io.Reader) (*ImportResult, error) {
	var res ImportResult
	if err := c.do(ctx, http.MethodPost, "/v1/subjects/import", "application/x-ndjson", r, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Erase erases a subject from the vault and cancels its queued messages.
func (c *Client) Erase(ctx context.Context, brand, user string) error {
	return c.do(ctx, http.MethodDelete, subjectPath(brand, user), "", nil, nil)
}

// Tokenize returns the token of a value.
func (c *Client) Tokenize(ctx context.Context, kind vault.Kind, value string) (string, error) {
	body, err := json.Marshal(tokenRequest{Kind: kind, Value: value})
	if err != nil {
		return "", err
	}
	defer clear(body)
	var res tokenResponse
	if err := c.do(ctx, http.MethodPost, "/v1/tokens", "application/json", bytes.NewReader(body), &res); err != nil {
		return "", err
	}
	return res.Token, nil
}

func subjectPath(brand, user string) string {
	return "/v1/subjects/" + url.PathEscape(brand) + "/" + url.PathEscape(user)
}

// maxResponse bounds what the client reads of an answer.
const maxResponse = 4 << 20

func (c *Client) do(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("admin: %s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
			eb.Error = apiError{Code: CodeInternal, Message: http.StatusText(resp.StatusCode)}
		}
		return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin: %s %s: malformed answer: %w", method, path, err)
	}
	return nil
}
