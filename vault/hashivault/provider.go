package hashivault

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
)

// Operation names, as they appear in Error.Op.
const (
	opWrap     = "wrap"
	opUnwrap   = "unwrap"
	opTokenMAC = "token mac"
	opRewrap   = "rewrap"
	opLogin    = "login"
	opSetup    = "setup"
	opKeys     = "keys"
	opHealth   = "health"
)

// Provider is a vault.KeyProvider whose keys live in a Transit engine. It
// is safe for concurrent use; Close stops its token renewal.
type Provider struct {
	cfg       Config
	client    *api.Client
	transport *http.Transport
	log       *slog.Logger
	getenv    func(string) string

	stop      chan struct{}
	done      chan struct{}
	denied    chan struct{} // a call got a 403: is the token still valid?
	closeOnce sync.Once
	closed    chan struct{} // closed by Close, before the renewal stops

	batcher *coalescer // nil when Config.MaxInFlight < 0
	latest  latestVersions

	mu    sync.Mutex
	owned bool // the token came from a login this Provider made
}

var _ vault.KeyProvider = (*Provider)(nil)

// New connects to Vault, logs in and starts renewing the token. It fails
// with an *Error matching vault.ErrUnavailable if Vault cannot be reached
// or refuses the login, and with ErrConfig if cfg is invalid. ctx bounds
// the login only.
func New(ctx context.Context, cfg Config, opts Options) (*Provider, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, tr, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	p := &Provider{
		cfg:       cfg,
		client:    client,
		transport: tr,
		log:       opts.Logger,
		getenv:    opts.Getenv,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		closed:    make(chan struct{}),
		denied:    make(chan struct{}, 1),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.getenv == nil {
		p.getenv = os.Getenv
	}
	if cfg.MaxInFlight > 0 {
		p.batcher = newCoalescer(cfg.MaxInFlight, cfg.BatchSize)
	}
	secret, err := p.login(ctx)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	go p.keepAlive(secret)
	return p, nil
}

// newClient builds the API client from cfg alone. api.DefaultConfig and
// api.NewClient read VAULT_* environment variables (VAULT_SKIP_VERIFY
// among them); the fields that matter are set here explicitly, and the
// token and namespace are reset after NewClient.
func newClient(cfg Config) (*api.Client, *http.Transport, error) {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4 * runtime.GOMAXPROCS(0),
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: cfg.Timeout, // also bounds the renewal calls, which take no context
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	ac := &api.Config{
		Address: cfg.Address,
		HttpClient: &http.Client{
			Transport: tr,
			// Vault's client follows redirects itself (to the active node).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		MaxRetries:   cfg.MaxRetries,
		MinRetryWait: 100 * time.Millisecond,
		MaxRetryWait: time.Second,
		// Timeout stays 0: the client's own timeout would be canceled
		// before a raw response's body is read. Every call here sets its
		// deadline on the context instead.
	}
	if err := ac.ConfigureTLS(&api.TLSConfig{
		CACert:        cfg.CAFile,
		ClientCert:    cfg.ClientCert,
		ClientKey:     cfg.ClientKey,
		TLSServerName: cfg.TLSServerName,
	}); err != nil {
		return nil, nil, fmt.Errorf("%w: ca_file or client_cert: %v", ErrConfig, err)
	}
	client, err := api.NewClient(ac)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: address: %v", ErrConfig, err)
	}
	client.ClearToken()
	client.ClearNamespace()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	return client, tr, nil
}

// Client returns the underlying API client, logged in. Tests and the
// blindpost CLI use it; the gateway needs only the KeyProvider methods.
func (p *Provider) Client() *api.Client { return p.client }

// Close stops token renewal and, if the token came from an AppRole or
// Kubernetes login, revokes it. It does not close in-flight calls.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		close(p.stop)
		<-p.done
		p.mu.Lock()
		owned := p.owned
		p.mu.Unlock()
		if owned {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.client.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
				p.log.Warn("vault: could not revoke the gateway's token on close", "reason", classify(ctx, "revoke", "", err).Reason)
			}
		}
		p.transport.CloseIdleConnections()
	})
	return nil
}

func (p *Provider) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

var errClosed = &Error{Op: "call", Kind: vault.ErrUnavailable, Reason: "provider closed"}

// KEKName and TokenKeyName return the Transit key names of a tenant, or
// an error matching vault.ErrInvalid if the tenant id cannot be part of a
// key name: only A-Z a-z 0-9 _ - are allowed (at most 64 bytes), so a
// tenant id can never reach another path or widen a policy glob.
func (p *Provider) KEKName(tenant string) (string, error) { return p.keyName(tenant, "-kek") }

func (p *Provider) TokenKeyName(tenant string) (string, error) { return p.keyName(tenant, "-token") }

func (p *Provider) keyName(tenant, suffix string) (string, error) {
	if !validName(tenant, false) {
		return "", fmt.Errorf("%w: tenant id is not usable in a Transit key name (want 1-64 of A-Z a-z 0-9 _ -)", vault.ErrInvalid)
	}
	return p.cfg.KeyPrefix + tenant + suffix, nil
}

// TokenVersion returns the pinned token key version, Config.TokenKeyVersion.
func (p *Provider) TokenVersion() int { return p.cfg.TokenKeyVersion }

// Item is one input of a batch: a data key (WrapBatch) or a wrapped key
// (UnwrapBatch, Rewrap), and the associated data it is bound to.
type Item struct {
	Data []byte
	AD   []byte
}

// Result is one output of a batch, in input order: Data, or Err (an
// *Error) if Transit refused this item alone. A failure of the whole call
// is the call's error instead.
type Result struct {
	Data []byte
	Err  error
}

// Wrap encrypts dataKey under the tenant's key-encryption key with
// transit/encrypt, binding it to ad (associated_data). The result is the
// Transit ciphertext ("vault:v<N>:..."), which names the key version.
// Concurrent calls are sent together in batches (Config.MaxInFlight).
func (p *Provider) Wrap(ctx context.Context, tenant string, dataKey, ad []byte) ([]byte, error) {
	if _, err := p.KEKName(tenant); err != nil {
		return nil, err
	}
	it := Item{Data: bytes.Clone(dataKey), AD: bytes.Clone(ad)}
	r, err := p.single(ctx, batchKey{op: opWrap, tenant: tenant}, it, func(ctx context.Context, items []Item) ([]Result, error) {
		defer func() {
			for _, it := range items {
				clear(it.Data)
			}
		}()
		return p.WrapBatch(ctx, tenant, items)
	})
	if err != nil {
		return nil, err
	}
	return r.Data, r.Err
}

// Unwrap decrypts a wrapped data key with transit/decrypt. Wrong
// associated data, another tenant's key, a tampered ciphertext or a
// retired key version give an error matching vault.ErrCorrupt; a sealed,
// unreachable or refusing Vault one matching vault.ErrUnavailable.
// Concurrent calls are sent together in batches (Config.MaxInFlight).
func (p *Provider) Unwrap(ctx context.Context, tenant string, wrapped, ad []byte) ([]byte, error) {
	if _, err := p.KEKName(tenant); err != nil {
		return nil, err
	}
	it := Item{Data: bytes.Clone(wrapped), AD: bytes.Clone(ad)}
	r, err := p.single(ctx, batchKey{op: opUnwrap, tenant: tenant}, it, func(ctx context.Context, items []Item) ([]Result, error) {
		return p.UnwrapBatch(ctx, tenant, items)
	})
	if err != nil {
		return nil, err
	}
	return r.Data, r.Err
}

// TokenMAC returns HMAC-SHA256 of msg under version of the tenant's token
// key, with transit/hmac and key_version pinned: the key never leaves
// Vault and rotating it never changes existing tokens. Concurrent calls
// are sent together in batches (Config.MaxInFlight).
func (p *Provider) TokenMAC(ctx context.Context, tenant string, version int, msg []byte) ([]byte, error) {
	if _, err := p.TokenKeyName(tenant); err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, fmt.Errorf("%w: token version %d", vault.ErrInvalid, version)
	}
	it := Item{Data: bytes.Clone(msg)}
	r, err := p.single(ctx, batchKey{op: opTokenMAC, tenant: tenant, version: version}, it, func(ctx context.Context, items []Item) ([]Result, error) {
		msgs := make([][]byte, len(items))
		for i, it := range items {
			msgs[i] = it.Data
		}
		defer clear(msgs) // the messages hold normalised addresses
		macs, err := p.TokenMACBatch(ctx, tenant, version, msgs)
		if err != nil {
			return nil, err
		}
		out := make([]Result, len(macs))
		for i, m := range macs {
			out[i].Data = m
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	return r.Data, r.Err
}

// single sends one item through the coalescer, or alone if it is off.
func (p *Provider) single(ctx context.Context, k batchKey, it Item, send sendFunc) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, &Error{Op: k.op, Kind: vault.ErrUnavailable, Reason: reasonCanceled, Err: err}
	}
	if p.batcher == nil {
		rs, err := send(ctx, []Item{it})
		if err != nil {
			return Result{}, err
		}
		return rs[0], nil
	}
	r, err := p.batcher.do(ctx, k, it, send)
	if err != nil {
		return Result{}, &Error{Op: k.op, Kind: vault.ErrUnavailable, Reason: reasonCanceled, Err: err}
	}
	return r, nil
}

type encryptItem struct {
	Plaintext      string `json:"plaintext"`
	AssociatedData string `json:"associated_data,omitempty"`
}

type decryptItem struct {
	Ciphertext     string `json:"ciphertext"`
	AssociatedData string `json:"associated_data,omitempty"`
}

type hmacItem struct {
	Input string `json:"input"`
}

type batchRequest[T any] struct {
	BatchInput []T `json:"batch_input"`
	KeyVersion int `json:"key_version,omitempty"`
	// PartialFailureResponseCode makes Transit answer 200 with per-item
	// errors when some items of a batch fail, instead of a bare 400.
	PartialFailureResponseCode int `json:"partial_failure_response_code,omitempty"`
}

type batchItemResult struct {
	Ciphertext string `json:"ciphertext"`
	Plaintext  string `json:"plaintext"`
	HMAC       string `json:"hmac"`
	Error      string `json:"error"`
}

type batchResponse struct {
	Data struct {
		BatchResults []batchItemResult `json:"batch_results"`
	} `json:"data"`
}

// WrapBatch wraps several data keys of one tenant, BatchSize per request.
func (p *Provider) WrapBatch(ctx context.Context, tenant string, items []Item) ([]Result, error) {
	key, err := p.KEKName(tenant)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(items))
	for chunk := range chunks(items, p.cfg.BatchSize) {
		in := make([]encryptItem, len(chunk))
		for i, it := range chunk {
			in[i] = encryptItem{Plaintext: b64(it.Data), AssociatedData: b64(it.AD)}
		}
		res, err := p.batch(ctx, opWrap, key, p.cfg.Mount+"/encrypt/"+key,
			batchRequest[encryptItem]{BatchInput: in, PartialFailureResponseCode: http.StatusOK}, len(in))
		clearItems(in)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			switch {
			case r.Error != "":
				reason, kind := classifyItem(opWrap, r.Error)
				out = append(out, Result{Err: &Error{Op: opWrap, Key: key, Kind: kind, Reason: reason}})
			default:
				v, err := CiphertextVersion([]byte(r.Ciphertext))
				if err != nil {
					return nil, badReply(opWrap, key, errors.New("no ciphertext in batch result"))
				}
				p.latest.raise(key, v)
				out = append(out, Result{Data: []byte(r.Ciphertext)})
			}
		}
	}
	return out, nil
}

// UnwrapBatch unwraps several wrapped keys of one tenant. An item that is
// not a Transit ciphertext fails alone, without being sent.
func (p *Provider) UnwrapBatch(ctx context.Context, tenant string, items []Item) ([]Result, error) {
	key, err := p.KEKName(tenant)
	if err != nil {
		return nil, err
	}
	out := make([]Result, len(items))
	for start := 0; start < len(items); {
		// Collect up to BatchSize well-formed items, failing the others.
		in := make([]decryptItem, 0, min(p.cfg.BatchSize, len(items)-start))
		idx := make([]int, 0, cap(in))
		for ; start < len(items) && len(in) < p.cfg.BatchSize; start++ {
			it := items[start]
			if _, err := CiphertextVersion(it.Data); err != nil {
				out[start].Err = corrupt(opUnwrap, key, reasonMalform)
				continue
			}
			in = append(in, decryptItem{Ciphertext: string(it.Data), AssociatedData: b64(it.AD)})
			idx = append(idx, start)
		}
		if len(in) == 0 {
			continue
		}
		res, err := p.batch(ctx, opUnwrap, key, p.cfg.Mount+"/decrypt/"+key,
			batchRequest[decryptItem]{BatchInput: in, PartialFailureResponseCode: http.StatusOK}, len(in))
		if err != nil {
			return nil, err
		}
		for j, r := range res {
			i := idx[j]
			if r.Error != "" {
				reason, kind := classifyItem(opUnwrap, r.Error)
				out[i].Err = &Error{Op: opUnwrap, Key: key, Kind: kind, Reason: reason}
				continue
			}
			dk, err := base64.StdEncoding.DecodeString(r.Plaintext)
			if err != nil {
				return nil, badReply(opUnwrap, key, errors.New("plaintext is not base64"))
			}
			out[i].Data = dk
		}
	}
	return out, nil
}

// TokenMACBatch returns the HMAC-SHA256 of each message under version of
// the tenant's token key, in one transit/hmac request per BatchSize.
func (p *Provider) TokenMACBatch(ctx context.Context, tenant string, version int, msgs [][]byte) ([][]byte, error) {
	key, err := p.TokenKeyName(tenant)
	if err != nil {
		return nil, err
	}
	if version < 1 {
		return nil, fmt.Errorf("%w: token version %d", vault.ErrInvalid, version)
	}
	prefix := "vault:v" + strconv.Itoa(version) + ":"
	out := make([][]byte, 0, len(msgs))
	for chunk := range chunks(msgs, p.cfg.BatchSize) {
		in := make([]hmacItem, len(chunk))
		for i, m := range chunk {
			in[i] = hmacItem{Input: b64(m)}
		}
		res, err := p.batch(ctx, opTokenMAC, key, p.cfg.Mount+"/hmac/"+key+"/sha2-256",
			batchRequest[hmacItem]{BatchInput: in, KeyVersion: version}, len(in))
		clearItems(in)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			if r.Error != "" {
				reason, kind := classifyItem(opTokenMAC, r.Error)
				return nil, &Error{Op: opTokenMAC, Key: key, Kind: kind, Reason: reason}
			}
			enc, ok := bytes.CutPrefix([]byte(r.HMAC), []byte(prefix))
			if !ok {
				// Transit used another version than the pinned one: never
				// mint a token from it.
				return nil, badReply(opTokenMAC, key, errors.New("HMAC does not name the pinned key version"))
			}
			mac := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
			n, err := base64.StdEncoding.Decode(mac, enc)
			if err != nil || n != 32 {
				return nil, badReply(opTokenMAC, key, errors.New("HMAC is not 32 bytes of base64"))
			}
			out = append(out, mac[:n])
		}
	}
	return out, nil
}

// batch posts one batch request and returns exactly n results.
func (p *Provider) batch(ctx context.Context, op, key, path string, req any, n int) ([]batchItemResult, error) {
	var resp batchResponse
	if err := p.post(ctx, op, key, path, req, &resp); err != nil {
		return nil, err
	}
	if len(resp.Data.BatchResults) != n {
		return nil, badReply(op, key, fmt.Errorf("%d batch results for %d inputs", len(resp.Data.BatchResults), n))
	}
	return resp.Data.BatchResults, nil
}

// post sends body to path and decodes the JSON answer into out. If out is
// a *batchResponse, a 400 whose body still holds batch_results (Transit
// answers so when every item failed) is decoded too, so that items fail
// one by one. Request and response bodies, which hold data keys in clear,
// are zeroed after use.
func (p *Provider) post(ctx context.Context, op, key, path string, body, out any) error {
	if p.isClosed() {
		return errClosed
	}
	buf, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("hashicorp: %s: encode request: %w", op, err)
	}
	defer clear(buf)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	resp, err := p.client.Logical().WriteRawWithContext(ctx, path, buf)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		var re *api.ResponseError
		br, isBatch := out.(*batchResponse)
		if isBatch && resp != nil && errors.As(err, &re) && re.StatusCode == http.StatusBadRequest {
			if derr := decodeBody(resp.Body, br); derr == nil && len(br.Data.BatchResults) > 0 {
				return nil
			}
		}
		e := classify(ctx, op, key, err)
		p.noteDenied(e)
		return e
	}
	if err := decodeBody(resp.Body, out); err != nil {
		if ctx.Err() != nil {
			return classify(ctx, op, key, err)
		}
		return badReply(op, key, err)
	}
	return nil
}

func decodeBody(r io.Reader, out any) error {
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	defer clear(b)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func b64(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

// clearItems drops the references to the encoded plaintexts. Go strings
// cannot be zeroed; this only lets them be collected sooner.
func clearItems[T any](s []T) { clear(s) }

func chunks[T any](s []T, n int) func(yield func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			c := s[:min(n, len(s))]
			s = s[len(c):]
			if !yield(c) {
				return
			}
		}
	}
}

// CiphertextVersion returns the Transit key version that wrapped a key
// ("vault:v<N>:..."), so a background re-wrap can skip current ones. An
// error matches vault.ErrCorrupt.
func CiphertextVersion(wrapped []byte) (int, error) {
	rest, ok := bytes.CutPrefix(wrapped, []byte("vault:v"))
	if !ok {
		return 0, corrupt(opUnwrap, "", reasonMalform)
	}
	v, rest, ok := bytes.Cut(rest, []byte(":"))
	if !ok || len(v) == 0 || len(v) > 9 || len(rest) == 0 {
		return 0, corrupt(opUnwrap, "", reasonMalform)
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, corrupt(opUnwrap, "", reasonMalform)
		}
		n = n*10 + int(c-'0')
	}
	for _, c := range rest {
		if c >= 0x80 || c < 0x20 {
			return 0, corrupt(opUnwrap, "", reasonMalform)
		}
	}
	if n < 1 {
		return 0, corrupt(opUnwrap, "", reasonMalform)
	}
	return n, nil
}

// Health checks that Vault is reachable, initialised and unsealed
// (sys/health); the gateway's readiness probe can call it.
func (p *Provider) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	// sys/health lives in the root namespace.
	h, err := p.client.WithNamespace("").Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		return classify(ctx, opHealth, "", err)
	case !h.Initialized:
		return &Error{Op: opHealth, Kind: vault.ErrUnavailable, Reason: "Vault is not initialised"}
	case h.Sealed:
		return &Error{Op: opHealth, Kind: vault.ErrUnavailable, Reason: reasonSealed}
	}
	return nil
}

// String never prints a token.
func (p *Provider) String() string { return "hashivault.Provider(" + p.cfg.Address + ")" }

// GoString never prints a token, even under %#v.
func (p *Provider) GoString() string { return p.String() }
