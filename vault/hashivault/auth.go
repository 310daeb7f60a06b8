package hashivault

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
)

// Re-login pacing: a login whose token must be replaced again within
// minLoginLife (a token read from the environment that nobody refreshes,
// a role whose max TTL is tiny) waits before the next one, doubling up to
// maxLoginDelay, so an expiring credential never hammers Vault.
const (
	minLoginLife  = 2 * time.Second
	firstDelay    = time.Second
	maxLoginDelay = 30 * time.Second

	// deniedCheckEvery spaces the lookups that a 403 triggers.
	deniedCheckEvery = 2 * time.Second
)

// login authenticates with the configured method and sets the client's
// token. It returns the secret the lifetime watcher renews, or nil for a
// token that never expires (nothing to renew).
func (p *Provider) login(ctx context.Context) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	a := p.cfg.Auth
	if a.Method == AuthToken {
		return p.loginToken(ctx)
	}
	path := "auth/" + a.Mount + "/login"
	body, err := p.loginBody()
	if err != nil {
		return nil, &Error{Op: opLogin, Key: path, Kind: vault.ErrUnavailable, Reason: err.Error()}
	}
	// Log in on a copy without the (maybe expired) current token, in the
	// auth method's namespace.
	ns := a.Namespace
	if ns == "" {
		ns = p.cfg.Namespace
	}
	lc := p.client.WithNamespace(ns)
	lc.ClearToken()
	s, err := lc.Logical().WriteWithContext(ctx, path, body)
	clear(body)
	if err != nil {
		return nil, classify(ctx, opLogin, path, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, badReply(opLogin, path, errors.New("no client token in the login response"))
	}
	p.client.SetToken(s.Auth.ClientToken)
	p.setOwned(true)
	p.log.Info("vault: logged in", "method", a.Method, "ttl", time.Duration(s.Auth.LeaseDuration)*time.Second, "renewable", s.Auth.Renewable)
	return s, nil
}

// loginBody reads the credentials of an AppRole or Kubernetes login. Its
// errors name files and variables, never their contents.
func (p *Provider) loginBody() (map[string]any, error) {
	a := p.cfg.Auth
	switch a.Method {
	case AuthAppRole:
		roleID := a.RoleID
		if a.RoleIDFile != "" {
			var err error
			if roleID, err = readSecretFile(a.RoleIDFile); err != nil {
				return nil, errors.New("role_id_file: " + err.Error())
			}
		}
		secretID, err := p.secretFromFileOrEnv("secret_id", a.SecretIDFile, a.SecretIDEnv)
		if err != nil {
			return nil, err
		}
		return map[string]any{"role_id": roleID, "secret_id": secretID}, nil
	case AuthKubernetes:
		// Read at every login: projected service account tokens rotate.
		jwt, err := readSecretFile(a.ServiceAccountTokenFile)
		if err != nil {
			return nil, errors.New("service_account_token_file: " + err.Error())
		}
		return map[string]any{"role": a.Role, "jwt": jwt}, nil
	}
	return nil, errors.New("unknown auth method")
}

func (p *Provider) secretFromFileOrEnv(what, file, env string) (string, error) {
	if file != "" {
		s, err := readSecretFile(file)
		if err != nil {
			return "", errors.New(what + "_file: " + err.Error())
		}
		return s, nil
	}
	s := p.getenv(env)
	if s == "" {
		return "", errors.New(what + "_env: environment variable " + env + " is empty or unset")
	}
	return s, nil
}

// loginToken uses a token given to the gateway: it looks the token up to
// learn whether and when it expires.
func (p *Provider) loginToken(ctx context.Context) (*api.Secret, error) {
	a := p.cfg.Auth
	tok, err := p.secretFromFileOrEnv("token", a.TokenFile, a.TokenEnv)
	if err != nil {
		return nil, &Error{Op: opLogin, Key: "token", Kind: vault.ErrUnavailable, Reason: err.Error()}
	}
	p.client.SetToken(tok)
	s, err := p.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, classify(ctx, opLogin, "auth/token/lookup-self", err)
	}
	if s == nil {
		return nil, badReply(opLogin, "auth/token/lookup-self", errors.New("empty lookup-self response"))
	}
	ttl, err1 := s.TokenTTL()
	renewable, err2 := s.TokenIsRenewable()
	if err1 != nil || err2 != nil {
		return nil, badReply(opLogin, "auth/token/lookup-self", errors.Join(err1, err2))
	}
	p.log.Info("vault: using token", "source", tokenSource(a), "ttl", ttl, "renewable", renewable)
	if ttl <= 0 {
		p.setOwned(false)
		return nil, nil
	}
	s = &api.Secret{Auth: &api.SecretAuth{ClientToken: tok, Renewable: renewable, LeaseDuration: int(ttl / time.Second)}}
	p.setOwned(false)
	return s, nil
}

func tokenSource(a AuthConfig) string {
	if a.TokenFile != "" {
		return "file"
	}
	return "env"
}

func (p *Provider) setOwned(owned bool) {
	p.mu.Lock()
	p.owned = owned
	p.mu.Unlock()
}

// keepAlive renews the token with the client's lifetime watcher and logs
// in again when renewal ends (the token reaches its max TTL, or renewal
// keeps failing), until Close.
func (p *Provider) keepAlive(secret *api.Secret) {
	defer close(p.done)
	delay := firstDelay
	for {
		start := time.Now()
		if !p.watch(secret) {
			return
		}
		if time.Since(start) < minLoginLife {
			if !p.sleep(delay) {
				return
			}
			delay = min(2*delay, maxLoginDelay)
		} else {
			delay = firstDelay
		}
		var ok bool
		if secret, ok = p.relogin(); !ok {
			return
		}
	}
}

// watch runs a lifetime watcher on secret (nil: a token without TTL,
// nothing to renew) until it is done, or until a call was refused with 403
// and the token turns out to be invalid (revoked, or lost by a restored
// Vault): then a new login is due at once, not at the end of the lease.
// False means Close stopped it.
func (p *Provider) watch(secret *api.Secret) bool {
	var renewCh <-chan *api.RenewOutput
	var doneCh <-chan error
	if secret != nil {
		w, err := p.client.NewLifetimeWatcher(&api.LifetimeWatcherInput{Secret: secret})
		if err != nil {
			p.log.Warn("vault: cannot watch the token", "error", err)
			return p.sleep(p.cfg.Timeout)
		}
		go w.Start()
		defer w.Stop()
		renewCh, doneCh = w.RenewCh(), w.DoneCh()
	}
	var lastCheck time.Time
	for {
		select {
		case <-p.stop:
			return false
		case <-p.denied:
			if time.Since(lastCheck) < deniedCheckEvery {
				continue
			}
			lastCheck = time.Now()
			if p.tokenInvalid() {
				p.log.Warn("vault: the token is no longer valid; logging in again")
				return true
			}
		case r := <-renewCh:
			if r != nil && r.Secret != nil && r.Secret.Auth != nil {
				p.log.Debug("vault: token renewed", "ttl", time.Duration(r.Secret.Auth.LeaseDuration)*time.Second)
			}
		case err := <-doneCh:
			if err != nil {
				p.log.Warn("vault: token renewal failed; logging in again",
					"reason", classify(context.Background(), "renew", "", err).Reason)
			} else {
				p.log.Info("vault: token near the end of its lifetime; logging in again")
			}
			return true
		}
	}
}

// tokenInvalid reports whether Vault refuses the current token itself
// (lookup-self answers 403), as opposed to a policy refusing one path.
func (p *Provider) tokenInvalid() bool {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	_, err := p.client.Auth().Token().LookupSelfWithContext(ctx)
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// noteDenied tells the renewal loop that a call got a 403.
func (p *Provider) noteDenied(err error) {
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusForbidden {
		select {
		case p.denied <- struct{}{}:
		default:
		}
	}
}

// relogin logs in until it succeeds or Close is called.
func (p *Provider) relogin() (*api.Secret, bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	delay := firstDelay
	for {
		s, err := p.login(ctx)
		if err == nil {
			return s, true
		}
		var e *Error
		reason := "unknown"
		if errors.As(err, &e) {
			reason = e.Reason
		}
		p.log.Warn("vault: login failed; retrying", "reason", reason, "in", delay)
		if !p.sleep(delay) {
			return nil, false
		}
		delay = min(2*delay, maxLoginDelay)
	}
}

// sleep waits d; false means Close was called.
func (p *Provider) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.stop:
		return false
	case <-t.C:
		return true
	}
}
