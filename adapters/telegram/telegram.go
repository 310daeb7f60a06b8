// Package telegram delivers instant messages through the Telegram Bot API's
// sendMessage method, written directly against net/http.
//
// It runs inside the operator's gateway, after rendering, so what it handles
// is personal data: the chat id identifies a player, and the text is
// whatever the template filled in. The bot token is a secret that travels in
// the URL path (/bot<token>/sendMessage). None of these ever appears in an
// error: transport errors are stripped of the *url.Error that would carry the
// URL, and Telegram's description, which can quote user data, is used only to
// classify a failure, never copied. Every error returned by Send holds an
// *adapters.Error whose code is "telegram_<error_code>" for a Bot API answer
// ("telegram_403"), "http_<status>" for an answer Telegram did not write (a
// proxy's 502), or one of telegram_network, telegram_timeout,
// telegram_canceled, telegram_invalid_message, telegram_text_too_long,
// telegram_bad_response.
//
// Texts longer than Telegram's limit of 4096 UTF-16 code units are split
// into several messages (at most MaxParts); see Client.Send for what that
// means for retries.
package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/blindpost/blindpost/adapters/internal/httpx"

	"github.com/blindpost/blindpost/adapters"
)

// DefaultBaseURL is the public Bot API endpoint.
const DefaultBaseURL = "https://api.telegram.org"

// MaxTextLen is the longest text one sendMessage takes, in UTF-16 code units
// (Telegram counts text the way its entity offsets do).
const MaxTextLen = 4096

// MaxParts bounds how many messages one long text may become. A text
// longer than that is a template's mistake, not something to put in front
// of a player; it is refused with ErrTextTooLong before anything is sent.
const MaxParts = 16

const (
	defaultTimeout = 15 * time.Second
	// maxResponse bounds what is read of a reply; a sendMessage reply
	// echoes the message, so it is at most a few tens of KiB.
	maxResponse = 1 << 20
	// A 429 on a later part of a split message is waited out in Send, at
	// most partRetries times and only for hints up to maxPartWait, so that
	// a flood limit does not turn into a retry of the whole message (and a
	// duplicate of the parts already delivered).
	partRetries = 3
	maxPartWait = 5 * time.Second
)

// Parse modes. Config.ParseMode and Message.ParseMode take these values.
const (
	// ParseModePlain sends the text as is, without formatting. In a
	// Message it overrides a Config default of HTML.
	ParseModePlain = "plain"
	// ParseModeHTML is Telegram's HTML subset. Long texts are split
	// between tags and entities, and tags open at a split are closed at
	// the end of one part and reopened at the start of the next.
	ParseModeHTML = "HTML"
	// ParseModeMarkdownV2 is sent whole, never split: Telegram counts the
	// limit after parsing, which this package does not replicate, so a
	// too-long MarkdownV2 text is refused by Telegram (400, permanent).
	ParseModeMarkdownV2 = "MarkdownV2"
)

var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("invalid config")
	// ErrInvalidMessage reports a Message that cannot be sent: no text,
	// a malformed chat id, invalid UTF-8, an unknown parse mode.
	ErrInvalidMessage = errors.New("invalid message")

	// ErrChatNotFound: the chat does not exist or the bot never saw it
	// (400 "chat not found").
	ErrChatNotFound = errors.New("chat not found")
	// ErrBotBlocked: the player blocked the bot (403 "bot was blocked by
	// the user"). The gateway may treat it like an opt-out of the channel.
	ErrBotBlocked = errors.New("bot was blocked by the user")
	// ErrUserDeactivated: the player's account is gone (403 "user is
	// deactivated").
	ErrUserDeactivated = errors.New("user is deactivated")
	// ErrBotKicked: the bot was removed from the group or channel (403).
	ErrBotKicked = errors.New("bot was kicked from the chat")
	// ErrChatMigrated: a group became a supergroup with a new id; the
	// chain also holds a *ChatMigratedError with the new id.
	ErrChatMigrated = errors.New("group chat was migrated to a supergroup")
	// ErrUnauthorized: Telegram does not know the bot token (401). This is
	// the operator's configuration, not the player's.
	ErrUnauthorized = errors.New("bot token rejected")
	// ErrTextTooLong: the text would take more than MaxParts messages.
	ErrTextTooLong = errors.New("text too long")
	// ErrBadResponse: the reply was not a Bot API answer (a proxy's page,
	// a truncated body).
	ErrBadResponse = errors.New("unexpected response")
)

// ChatMigratedError carries the new chat id Telegram reported with
// ErrChatMigrated, so the gateway can update the record and send again.
// The id is personal data: Error() leaves it out.
type ChatMigratedError struct {
	ToChatID int64
}

func (e *ChatMigratedError) Error() string { return ErrChatMigrated.Error() }

// Unwrap lets errors.Is(err, ErrChatMigrated) match.
func (e *ChatMigratedError) Unwrap() error { return ErrChatMigrated }

// Config says which bot sends and how.
type Config struct {
	// BaseURL is the Bot API server; default DefaultBaseURL. Tests and a
	// self-hosted Bot API server override it. It must be https, except to
	// a loopback host.
	BaseURL string
	// Token is the bot token, "<bot id>:<secret>". It is a secret.
	Token string
	// Timeout bounds each sendMessage call; default 15s.
	Timeout time.Duration
	// ParseMode is the default for messages that set none: "" or
	// ParseModePlain for plain text, ParseModeHTML, ParseModeMarkdownV2.
	ParseMode string
	// DisableWebPagePreview sends link_preview_options {is_disabled: true},
	// so Telegram does not fetch the links in a message (which would tell
	// a link's host that the player's client is about to show it).
	DisableWebPagePreview bool
}

// String leaves the token out, so a logged Config does not leak it.
func (c Config) String() string {
	return fmt.Sprintf("telegram.Config{BaseURL:%q Token:<redacted> Timeout:%s ParseMode:%q DisableWebPagePreview:%t}",
		c.BaseURL, c.Timeout, c.ParseMode, c.DisableWebPagePreview)
}

var (
	tokenRE    = regexp.MustCompile(`^[0-9]{1,20}:[A-Za-z0-9_-]{1,200}$`)
	numericRE  = regexp.MustCompile(`^-?[1-9][0-9]{0,19}$`)
	usernameRE = regexp.MustCompile(`^@[A-Za-z0-9_]{1,64}$`)
)

// Validate reports a configuration that could never deliver. Its errors
// name the field, never the token.
func (c Config) Validate() error {
	if c.Token == "" {
		return fmt.Errorf("telegram: config: token is required: %w", ErrConfig)
	}
	if !tokenRE.MatchString(c.Token) {
		return fmt.Errorf("telegram: config: token is not of the form <bot id>:<secret>: %w", ErrConfig)
	}
	if c.BaseURL != "" {
		if err := checkBaseURL(c.BaseURL); err != nil {
			return err
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("telegram: config: negative timeout: %w", ErrConfig)
	}
	if !validParseMode(c.ParseMode) {
		return fmt.Errorf("telegram: config: parse mode must be plain, HTML or MarkdownV2, not %q: %w", c.ParseMode, ErrConfig)
	}
	return nil
}

func checkBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("telegram: config: base url is not an absolute URL: %w", ErrConfig)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("telegram: config: base url must not have a query, fragment or user info: %w", ErrConfig)
	}
	switch u.Scheme {
	case "https":
	case "http":
		// The token rides in the path; plain HTTP is only for a Bot API
		// server (or a test) on the same machine.
		if !httpx.IsLoopback(u.Hostname()) {
			return fmt.Errorf("telegram: config: base url must be https unless the host is loopback: %w", ErrConfig)
		}
	default:
		return fmt.Errorf("telegram: config: base url scheme must be https: %w", ErrConfig)
	}
	return nil
}

func validParseMode(m string) bool {
	switch m {
	case "", ParseModePlain, ParseModeHTML, ParseModeMarkdownV2:
		return true
	}
	return false
}

// Message is one text for one chat.
type Message struct {
	// ChatID is the numeric chat id ("123456789", "-1001234567890") or a
	// channel's "@username".
	ChatID string
	// Text is the rendered text; in HTML mode it must already be escaped
	// for Telegram's HTML subset.
	Text string
	// ParseMode overrides Config.ParseMode; "" keeps the default.
	ParseMode string
}

// Result is Telegram's acceptance of a Message.
type Result struct {
	// MessageID is the first part's message_id; MessageIDs holds every
	// part's, in order (one entry unless the text was split).
	MessageID  int64
	MessageIDs []int64
}

// Client sends messages as one bot. It is safe for concurrent use.
type Client struct {
	cfg      Config
	hc       *http.Client
	endpoint string // holds the token: never put it in an error
	secret   string // the token's secret half, scrubbed from error text
}

// New returns a Client for cfg. client supplies the transport (connection
// pool, proxy); nil means a client with http.DefaultTransport. The Client
// uses its own copy of client that does not follow redirects: a redirect
// would hand the token-bearing request to another URL.
func New(cfg Config, client *http.Client) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.ParseMode == ParseModePlain {
		cfg.ParseMode = ""
	}
	hc := &http.Client{}
	if client != nil {
		*hc = *client
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	_, secret, _ := strings.Cut(cfg.Token, ":")
	return &Client{
		cfg:      cfg,
		hc:       hc,
		endpoint: strings.TrimRight(cfg.BaseURL, "/") + "/bot" + cfg.Token + "/sendMessage",
		secret:   secret,
	}, nil
}

// String leaves the token out, so a logged Client does not leak it.
func (c *Client) String() string { return "telegram.Client(" + c.cfg.BaseURL + ")" }

// Send delivers m. A nil error means Telegram accepted every part.
//
// A text over MaxTextLen is split on rune boundaries, preferring line
// breaks, then spaces, never inside an HTML tag or entity, a surrogate pair
// or a combining sequence; a text that would take more than MaxParts
// messages is refused. Each part goes out as its own sendMessage, in
// order, each after the previous one was accepted. A failure part-way
// returns the error together with a Result holding the ids of the parts
// already delivered; a retry of the whole Message then repeats those parts.
// To keep that rare: nothing is sent before the whole text has been checked
// and split; a permanent refusal of the chat (not found, blocked) shows on
// the first part, before anything was delivered; and a 429 on a later part,
// which Telegram guarantees it did not deliver, is waited out here (up to 3
// times, for hints of up to 5s, within ctx) and only that part is resent.
// A time-out or a dropped connection, on any part, is ambiguous (Telegram
// may have delivered it) and surfaces as a temporary error: delivery is
// at-least-once, so the caller's retry may duplicate parts, never lose them.
// A 2xx answer that cannot be read is the opposite case: Telegram most
// likely delivered, so it is permanent and not retried.
//
// Every error holds an *adapters.Error: temporary for 429 (with RetryAfter
// from Telegram's retry_after), 5xx, network errors and time-outs;
// permanent otherwise, with sentinels for the common cases (ErrChatNotFound,
// ErrBotBlocked, ErrUserDeactivated, ErrBotKicked, ErrChatMigrated,
// ErrUnauthorized).
func (c *Client) Send(ctx context.Context, m Message) (Result, error) {
	mode := m.ParseMode
	if mode == "" {
		mode = c.cfg.ParseMode
	}
	if mode == ParseModePlain {
		mode = ""
	}
	chatID, err := c.check(m, mode)
	if err != nil {
		return Result{}, err
	}
	if rawUnits(m.Text) > MaxParts*MaxTextLen {
		return Result{}, tooLong()
	}
	parts := splitText(m.Text, mode, MaxTextLen)
	if len(parts) > MaxParts {
		return Result{}, tooLong()
	}

	var res Result
	for i, part := range parts {
		body, err := c.encode(chatID, part, mode)
		if err != nil {
			return res, err
		}
		id, err := c.sendPart(ctx, body, i)
		if err != nil {
			if len(parts) > 1 {
				err = fmt.Errorf("telegram: part %d of %d: %w", i+1, len(parts), err)
			}
			return res, err
		}
		if len(res.MessageIDs) == 0 {
			res.MessageID = id
		}
		res.MessageIDs = append(res.MessageIDs, id)
	}
	return res, nil
}

func tooLong() error {
	return adapters.Permanent("telegram_text_too_long",
		fmt.Errorf("telegram: more than %d messages: %w", MaxParts, ErrTextTooLong))
}

// check validates m and returns the chat id as it goes into the JSON: a
// number for a numeric id (the Bot API's Integer), a string for @username.
func (c *Client) check(m Message, mode string) (any, error) {
	invalid := func(what string) error {
		return adapters.Permanent("telegram_invalid_message",
			fmt.Errorf("telegram: %s: %w", what, ErrInvalidMessage))
	}
	if !validParseMode(mode) {
		return nil, invalid("unknown parse mode")
	}
	if strings.TrimSpace(m.Text) == "" {
		return nil, invalid("empty text")
	}
	if !utf8.ValidString(m.Text) {
		return nil, invalid("text is not valid UTF-8")
	}
	switch {
	case numericRE.MatchString(m.ChatID):
		if _, err := strconv.ParseInt(m.ChatID, 10, 64); err != nil {
			return nil, invalid("chat id out of range")
		}
		return json.Number(m.ChatID), nil
	case usernameRE.MatchString(m.ChatID):
		return m.ChatID, nil
	default:
		return nil, invalid("chat id is neither a number nor an @username")
	}
}

type sendMessageRequest struct {
	ChatID             any                 `json:"chat_id"`
	Text               string              `json:"text"`
	ParseMode          string              `json:"parse_mode,omitempty"`
	LinkPreviewOptions *linkPreviewOptions `json:"link_preview_options,omitempty"`
}

type linkPreviewOptions struct {
	IsDisabled bool `json:"is_disabled"`
}

func (c *Client) encode(chatID any, text, mode string) ([]byte, error) {
	req := sendMessageRequest{ChatID: chatID, Text: text, ParseMode: mode}
	if c.cfg.DisableWebPagePreview {
		req.LinkPreviewOptions = &linkPreviewOptions{IsDisabled: true}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Telegram reads JSON, not HTML: keep <, > and & as they are.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(req); err != nil {
		// Only reachable through a bug (the values are validated);
		// json's error would quote the value, so it is not wrapped.
		return nil, adapters.Permanent("telegram_invalid_message",
			fmt.Errorf("telegram: encode request: %w", ErrInvalidMessage))
	}
	return buf.Bytes(), nil
}

// sendPart sends one part, waiting out short 429s on later parts.
func (c *Client) sendPart(ctx context.Context, body []byte, index int) (int64, error) {
	for attempt := 0; ; attempt++ {
		id, err := c.post(ctx, body)
		if err == nil || index == 0 || attempt == partRetries {
			return id, err
		}
		wait := adapters.RetryAfter(err)
		if adapters.Code(err) != "telegram_429" || wait <= 0 || wait > maxPartWait {
			return id, err
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return id, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return id, err
		case <-t.C:
		}
	}
}

type apiResponse struct {
	OK     bool `json:"ok"`
	Result struct {
		MessageID int64 `json:"message_id"`
	} `json:"result"`
	ErrorCode   int    `json:"error_code"`
	Description string `json:"description"`
	Parameters  struct {
		RetryAfter      int   `json:"retry_after"`
		MigrateToChatID int64 `json:"migrate_to_chat_id"`
	} `json:"parameters"`
}

// post makes one sendMessage call and classifies its outcome.
func (c *Client) post(ctx context.Context, body []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		// NewRequest's errors quote the URL; the URL was validated, so
		// this is a bug, reported without the cause.
		return 0, adapters.Permanent("telegram_request", errors.New("telegram: cannot build request"))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return 0, c.transportError(ctx, err)
	}
	var ar apiResponse
	if err := json.Unmarshal(raw, &ar); err != nil || (!ar.OK && ar.ErrorCode == 0) {
		return 0, statusError(resp)
	}
	if ar.OK {
		if ar.Result.MessageID == 0 {
			// Telegram answered ok, so the message was most likely
			// delivered: permanent, so that a retry does not send it
			// twice.
			return 0, adapters.Permanent("telegram_bad_response",
				fmt.Errorf("telegram: sendMessage: ok without a message_id: %w", ErrBadResponse))
		}
		return ar.Result.MessageID, nil
	}
	return 0, apiError(&ar, resp)
}

// statusError classifies a reply that is not a Bot API answer by its HTTP
// status alone; the code says "http_" since Telegram did not write it.
func statusError(resp *http.Response) error {
	code := "http_" + strconv.Itoa(resp.StatusCode)
	err := fmt.Errorf("telegram: sendMessage: HTTP %d: %w", resp.StatusCode, ErrBadResponse)
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		e := adapters.Temporary(code, err)
		e.RetryAfter = retryAfterHeader(resp.Header.Get("Retry-After"))
		return e
	default:
		// Including a 2xx with a body that is not JSON: Telegram may have
		// delivered, so it is not retried.
		return adapters.Permanent(code, err)
	}
}

// apiError classifies a Bot API error. Telegram's description is matched,
// never copied: it may quote the chat or the text.
func apiError(ar *apiResponse, resp *http.Response) error {
	status := ar.ErrorCode
	code := "telegram_" + strconv.Itoa(status)
	desc := strings.ToLower(ar.Description)
	wrap := func(err error) error { return fmt.Errorf("telegram: sendMessage: %w", err) }
	switch {
	case status == http.StatusTooManyRequests:
		e := adapters.Temporary(code, wrap(errors.New("too many requests")))
		e.RetryAfter = time.Duration(ar.Parameters.RetryAfter) * time.Second
		if e.RetryAfter <= 0 {
			e.RetryAfter = retryAfterHeader(resp.Header.Get("Retry-After"))
		}
		return e
	case status >= 500:
		return adapters.Temporary(code, wrap(fmt.Errorf("server error %d", status)))
	case ar.Parameters.MigrateToChatID != 0:
		return adapters.Permanent(code, wrap(&ChatMigratedError{ToChatID: ar.Parameters.MigrateToChatID}))
	case status == http.StatusUnauthorized:
		return adapters.Permanent(code, wrap(ErrUnauthorized))
	case strings.Contains(desc, "chat not found"):
		return adapters.Permanent(code, wrap(ErrChatNotFound))
	case strings.Contains(desc, "bot was blocked by the user"):
		return adapters.Permanent(code, wrap(ErrBotBlocked))
	case strings.Contains(desc, "user is deactivated"):
		return adapters.Permanent(code, wrap(ErrUserDeactivated))
	case strings.Contains(desc, "bot was kicked"):
		return adapters.Permanent(code, wrap(ErrBotKicked))
	default:
		return adapters.Permanent(code, wrap(fmt.Errorf("request refused with %d", status)))
	}
}

// retryAfterHeader reads a Retry-After in seconds (what Telegram and most
// proxies send); an HTTP date or garbage gives 0, no hint.
func retryAfterHeader(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// transportError classifies a failure to get an answer. The *url.Error that
// net/http returns quotes the URL, and with it the token, so it is dropped
// and the token's secret is scrubbed from what remains.
func (c *Client) transportError(ctx context.Context, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	code := "telegram_network"
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled):
		code = "telegram_canceled"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		code = "telegram_timeout"
	}
	return adapters.Temporary(code, fmt.Errorf("telegram: sendMessage: %w", redact(err, c.secret)))
}

// redactedError replaces its cause's text with a scrubbed copy; errors.Is
// and errors.As still see the cause.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, secret string) error {
	msg := err.Error()
	if secret != "" {
		msg = strings.ReplaceAll(msg, secret, "<redacted>")
	}
	return &redactedError{msg: msg, err: err}
}
