package hashivault

import (
	"context"
	"sync"
	"time"

	"github.com/blindpost/blindpost/vault"
)

var _ vault.KEKVersioner = (*Provider)(nil)

// latestTTL bounds how long KEKVersion trusts a KEK's latest version read
// from Transit. A rotation made by another process is seen within it (or
// at once, when a wrap or a wrapped key names a newer version); one made
// by this Provider (RotateKEK) is seen at once.
const latestTTL = 5 * time.Second

// latestVersions caches the latest version of each KEK, by key name.
type latestVersions struct {
	mu sync.Mutex
	m  map[string]latestVersion
}

type latestVersion struct {
	v  int
	at time.Time
}

// get returns the cached version of name if it is fresh.
func (c *latestVersions) get(name string, now time.Time) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[name]
	return e.v, ok && now.Sub(e.at) < latestTTL
}

// set records v as the latest version of name, read at now.
func (c *latestVersions) set(name string, v int, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]latestVersion{}
	}
	c.m[name] = latestVersion{v: v, at: now}
}

// raise notes that a wrap used version v of name: the latest is at least
// v. It leaves the freshness of the entry alone.
func (c *latestVersions) raise(name string, v int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[name]; ok && e.v < v {
		e.v = v
		c.m[name] = e
	}
}

// KEKVersion returns the version of the tenant's key-encryption key that
// wrapped a data key, from the ciphertext's "vault:v<N>:" prefix, and the
// version Wrap uses now, the key's latest_version. The latest version is
// read from Transit (KeyStatus: the token needs read on the key, as
// AdminPolicy grants, not the gateway's policy) and cached for a few
// seconds; RotateKEK updates the cache at once. A wrapped key that is not a
// Transit ciphertext gives an error matching vault.ErrCorrupt.
func (p *Provider) KEKVersion(ctx context.Context, tenant string, wrapped []byte) (version, latest int, err error) {
	kek, err := p.KEKName(tenant)
	if err != nil {
		return 0, 0, err
	}
	version, err = CiphertextVersion(wrapped)
	if err != nil {
		return 0, 0, corrupt(opKeys, kek, reasonMalform)
	}
	latest, err = p.latestKEK(ctx, kek, version)
	if err != nil {
		return 0, 0, err
	}
	return version, latest, nil
}

// latestKEK returns the latest version of the KEK name, from the cache
// unless it is stale or older than seen, a version some ciphertext names.
func (p *Provider) latestKEK(ctx context.Context, name string, seen int) (int, error) {
	if v, ok := p.latest.get(name, time.Now()); ok && v >= seen {
		return v, nil
	}
	st, err := p.KeyStatus(ctx, name)
	if err != nil {
		return 0, err
	}
	p.latest.set(name, st.LatestVersion, time.Now())
	return st.LatestVersion, nil
}

// RewrapKeys is Rewrap with plain types, so that a record store can re-wrap
// in batches through an interface of its own without importing this
// package: wrapped[i] is bound to ad[i]; out[i] is its new wrapped key, or
// nil and errs[i] says why (vault.ErrCorrupt: tampered, bound to another
// subject, or wrapped by a retired version). err is a failure of the whole
// call (vault.ErrUnavailable).
func (p *Provider) RewrapKeys(ctx context.Context, tenant string, wrapped, ad [][]byte) (out [][]byte, errs []error, err error) {
	if len(wrapped) != len(ad) {
		return nil, nil, &Error{Op: opRewrap, Kind: vault.ErrInvalid, Reason: "as many associated data as wrapped keys are needed"}
	}
	items := make([]Item, len(wrapped))
	for i := range wrapped {
		items[i] = Item{Data: wrapped[i], AD: ad[i]}
	}
	res, err := p.Rewrap(ctx, tenant, items)
	if err != nil {
		return nil, nil, err
	}
	out, errs = make([][]byte, len(res)), make([]error, len(res))
	for i, r := range res {
		out[i], errs[i] = r.Data, r.Err
	}
	return out, errs, nil
}
