package hashivault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/blindpost/blindpost/vault"
)

// This file holds what operators run, not the gateway: key setup, KEK
// rotation, re-wrapping, retiring old KEK versions, and the Vault policies
// that allow each. They need more than the gateway's policy (AdminPolicy).

// KeyStatus is what Transit reports about one key.
type KeyStatus struct {
	Name                 string
	Type                 string
	LatestVersion        int
	MinDecryptionVersion int
	MinEncryptionVersion int // 0 means the latest
	MinAvailableVersion  int // versions below it were trimmed (destroyed)
	Exportable           bool
	AllowPlaintextBackup bool
}

// KeyStatus reads transit/keys/<name>. A missing key is an error matching
// vault.ErrNotFound.
func (p *Provider) KeyStatus(ctx context.Context, name string) (KeyStatus, error) {
	if !validName(name, true) {
		return KeyStatus{}, fmt.Errorf("%w: key name", vault.ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	path := p.cfg.Mount + "/keys/" + name
	s, err := p.client.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return KeyStatus{}, classify(ctx, opKeys, name, err)
	}
	if s == nil || s.Data == nil {
		return KeyStatus{}, &Error{Op: opKeys, Key: name, Kind: vault.ErrNotFound, Reason: "no such Transit key"}
	}
	st := KeyStatus{Name: name}
	st.Type, _ = s.Data["type"].(string)
	st.Exportable, _ = s.Data["exportable"].(bool)
	st.AllowPlaintextBackup, _ = s.Data["allow_plaintext_backup"].(bool)
	for field, dst := range map[string]*int{
		"latest_version":         &st.LatestVersion,
		"min_decryption_version": &st.MinDecryptionVersion,
		"min_encryption_version": &st.MinEncryptionVersion,
		"min_available_version":  &st.MinAvailableVersion,
	} {
		n, ok := s.Data[field].(json.Number)
		if !ok {
			continue
		}
		v, err := n.Int64()
		if err != nil {
			return KeyStatus{}, badReply(opKeys, name, err)
		}
		*dst = int(v)
	}
	if st.Type == "" || st.LatestVersion < 1 {
		return KeyStatus{}, badReply(opKeys, name, errors.New("key without type or version"))
	}
	return st, nil
}

// Setup creates the tenant's key-encryption key (Config.KeyType) and token
// key (type hmac, 32 bytes) if they are missing, neither exportable nor
// backed up in plaintext, and checks existing ones: the KEK must take
// associated_data, neither key may be exportable, and the token key must
// have the pinned TokenKeyVersion available. It is idempotent, and safe
// when several nodes run it at once. It returns the names it created.
func (p *Provider) Setup(ctx context.Context, tenant string) ([]string, error) {
	kek, err := p.KEKName(tenant)
	if err != nil {
		return nil, err
	}
	tk, _ := p.TokenKeyName(tenant)
	var created []string
	for _, k := range []struct {
		name string
		body map[string]any
	}{
		{kek, map[string]any{"type": p.cfg.KeyType}},
		{tk, map[string]any{"type": "hmac", "key_size": 32}},
	} {
		_, err := p.KeyStatus(ctx, k.name)
		if errors.Is(err, vault.ErrNotFound) {
			k.body["exportable"] = false
			k.body["allow_plaintext_backup"] = false
			if err := p.write(ctx, opSetup, k.name, p.cfg.Mount+"/keys/"+k.name, k.body); err != nil {
				return created, err
			}
			created = append(created, k.name)
		} else if err != nil {
			return created, err
		}
	}
	st, err := p.KeyStatus(ctx, kek)
	if err != nil {
		return created, err
	}
	if err := checkKEK(st); err != nil {
		return created, err
	}
	if st, err = p.KeyStatus(ctx, tk); err != nil {
		return created, err
	}
	return created, p.checkTokenKey(st)
}

func checkKEK(st KeyStatus) error {
	bad := func(why string) error {
		return &Error{Op: opSetup, Key: st.Name, Kind: vault.ErrInvalid, Reason: why}
	}
	switch {
	case st.Type != "aes256-gcm96" && st.Type != "aes128-gcm96" && st.Type != "chacha20-poly1305":
		return bad("key type " + st.Type + " does not take associated_data")
	case st.Exportable || st.AllowPlaintextBackup:
		return bad("key is exportable or allows plaintext backup: it may have left Vault")
	}
	return nil
}

func (p *Provider) checkTokenKey(st KeyStatus) error {
	bad := func(why string) error {
		return &Error{Op: opSetup, Key: st.Name, Kind: vault.ErrInvalid, Reason: why}
	}
	v := p.cfg.TokenKeyVersion
	switch {
	case st.Exportable || st.AllowPlaintextBackup:
		return bad("key is exportable or allows plaintext backup: it may have left Vault")
	case v > st.LatestVersion:
		return bad(fmt.Sprintf("token_key_version %d does not exist yet (latest is %d)", v, st.LatestVersion))
	case v < st.MinAvailableVersion:
		return bad(fmt.Sprintf("token_key_version %d was trimmed (min_available_version %d)", v, st.MinAvailableVersion))
	case st.MinEncryptionVersion > 0 && v < st.MinEncryptionVersion:
		return bad(fmt.Sprintf("token_key_version %d is below min_encryption_version %d", v, st.MinEncryptionVersion))
	}
	return nil
}

// RotateKEK adds a new version of the tenant's key-encryption key and
// returns it. New wraps use it at once; old wrapped keys still unwrap until
// they are re-wrapped (Rewrap) and the old versions retired.
func (p *Provider) RotateKEK(ctx context.Context, tenant string) (int, error) {
	kek, err := p.KEKName(tenant)
	if err != nil {
		return 0, err
	}
	v, err := p.rotate(ctx, kek)
	if err != nil {
		return 0, err
	}
	p.latest.set(kek, v, time.Now()) // KEKVersion must see it at once
	return v, nil
}

// RotateTokenKey adds a new version of the tenant's token key and returns
// it. Nothing changes until token_key_version is moved to it, which is a
// planned re-tokenisation: every token changes.
func (p *Provider) RotateTokenKey(ctx context.Context, tenant string) (int, error) {
	tk, err := p.TokenKeyName(tenant)
	if err != nil {
		return 0, err
	}
	return p.rotate(ctx, tk)
}

func (p *Provider) rotate(ctx context.Context, name string) (int, error) {
	if err := p.write(ctx, "rotate", name, p.cfg.Mount+"/keys/"+name+"/rotate", nil); err != nil {
		return 0, err
	}
	st, err := p.KeyStatus(ctx, name)
	if err != nil {
		return 0, err
	}
	return st.LatestVersion, nil
}

// Rewrap re-encrypts wrapped data keys of one tenant under the latest
// version of its key-encryption key, each with its associated data, and
// returns the new wrapped keys in input order (per-item failures, such as
// vault.ErrCorrupt, in Result.Err).
//
// Transit's own transit/rewrap endpoint ignores associated_data in every
// Vault release up to this one (hashicorp/vault#29532, #31791), so a key
// wrapped with associated data fails there with "message authentication
// failed". Rewrap therefore decrypts and encrypts again, batch by batch:
// the data keys pass through this process's memory, as they do on every
// Unwrap. TestTransitRewrapIgnoresAssociatedData watches for a Vault that
// fixes this.
func (p *Provider) Rewrap(ctx context.Context, tenant string, items []Item) ([]Result, error) {
	plain, err := p.UnwrapBatch(ctx, tenant, items)
	if err != nil {
		return nil, rewrapErr(err)
	}
	out := make([]Result, len(items))
	in := make([]Item, 0, len(items))
	idx := make([]int, 0, len(items))
	for i, r := range plain {
		if r.Err != nil {
			out[i].Err = rewrapErr(r.Err)
			continue
		}
		in = append(in, Item{Data: r.Data, AD: items[i].AD})
		idx = append(idx, i)
	}
	defer func() {
		for _, r := range plain {
			clear(r.Data)
		}
	}()
	wrapped, err := p.WrapBatch(ctx, tenant, in)
	if err != nil {
		return nil, rewrapErr(err)
	}
	for j, r := range wrapped {
		out[idx[j]] = Result{Data: r.Data, Err: rewrapErr(r.Err)}
	}
	return out, nil
}

func rewrapErr(err error) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		c.Op = opRewrap + " (" + e.Op + ")"
		return &c
	}
	return err
}

// SetMinDecryptionVersion makes Transit refuse to unwrap keys wrapped by
// KEK versions below v. Run it once every stored key has been re-wrapped
// to v or later (Rewrap, and CiphertextVersion to check); an unwrap that
// still needs an older version then fails with vault.ErrCorrupt instead of
// quietly keeping the old version alive. It can be lowered again: nothing
// is destroyed until TrimKEK.
func (p *Provider) SetMinDecryptionVersion(ctx context.Context, tenant string, v int) error {
	kek, err := p.KEKName(tenant)
	if err != nil {
		return err
	}
	if v < 1 {
		return fmt.Errorf("%w: version %d", vault.ErrInvalid, v)
	}
	return p.write(ctx, "config", kek, p.cfg.Mount+"/keys/"+kek+"/config", map[string]any{"min_decryption_version": v})
}

// TrimKEK destroys the KEK versions below v (transit/keys/<kek>/trim,
// min_available_version), raising min_encryption_version to v as Transit
// requires. Set SetMinDecryptionVersion to at least v first.
// It cannot be undone: every wrapped key of an older version, including
// those in database backups and WAL archives taken before the re-wrap,
// becomes unreadable. That is the point, since it ends the window in which
// backups still hold data keys of erased subjects.
func (p *Provider) TrimKEK(ctx context.Context, tenant string, v int) error {
	kek, err := p.KEKName(tenant)
	if err != nil {
		return err
	}
	if v < 1 {
		return fmt.Errorf("%w: version %d", vault.ErrInvalid, v)
	}
	st, err := p.KeyStatus(ctx, kek)
	if err != nil {
		return err
	}
	if st.MinDecryptionVersion < v {
		return &Error{Op: "trim", Key: kek, Kind: vault.ErrInvalid,
			Reason: fmt.Sprintf("min_decryption_version is %d: set it to %d first (SetMinDecryptionVersion)", st.MinDecryptionVersion, v)}
	}
	// Transit trims only below an explicit min_encryption_version. Raising
	// it to v changes nothing for new wraps, which use the latest version.
	if st.MinEncryptionVersion < v {
		if err := p.write(ctx, "config", kek, p.cfg.Mount+"/keys/"+kek+"/config", map[string]any{"min_encryption_version": v}); err != nil {
			return err
		}
	}
	return p.write(ctx, "trim", kek, p.cfg.Mount+"/keys/"+kek+"/trim", map[string]any{"min_available_version": v})
}

func (p *Provider) write(ctx context.Context, op, key, path string, body map[string]any) error {
	if p.isClosed() {
		return errClosed
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	if _, err := p.client.Logical().WriteWithContext(ctx, path, body); err != nil {
		e := classify(ctx, op, key, err)
		p.noteDenied(e)
		return e
	}
	return nil
}

// GatewayPolicy returns the Vault policy (HCL) a gateway needs for the
// given tenants: encrypt and decrypt with their KEKs, HMAC with their token
// keys, and renew or revoke its own token. No key management: it cannot
// read, create, rotate, export or trim keys. Without tenants it allows
// every key under the prefix.
func GatewayPolicy(cfg Config, tenants ...string) (string, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("# blindpost gateway: wrap and unwrap data keys, mint tokens. No key management.\n")
	keks, tks, err := policyNames(cfg, tenants)
	if err != nil {
		return "", err
	}
	for i := range keks {
		rule(&b, cfg.Mount+"/encrypt/"+keks[i], "update")
		rule(&b, cfg.Mount+"/decrypt/"+keks[i], "update")
		if len(tenants) == 0 {
			rule(&b, cfg.Mount+"/hmac/"+tks[i], "update") // a glob ends the path
		} else {
			rule(&b, cfg.Mount+"/hmac/"+tks[i]+"/sha2-256", "update")
		}
	}
	rule(&b, "auth/token/lookup-self", "read")
	rule(&b, "auth/token/renew-self", "update")
	rule(&b, "auth/token/revoke-self", "update")
	return b.String(), nil
}

// AdminPolicy returns the Vault policy (HCL) for `blindpost` key
// management of the given tenants: Setup, RotateKEK, RotateTokenKey,
// Rewrap, SetMinDecryptionVersion, TrimKEK. The token key can be rotated
// but not trimmed, and no key can be made exportable.
func AdminPolicy(cfg Config, tenants ...string) (string, error) {
	if len(tenants) == 0 {
		return "", fmt.Errorf("%w: admin policy: name the tenants", vault.ErrInvalid)
	}
	gw, err := GatewayPolicy(cfg, tenants...)
	if err != nil {
		return "", err
	}
	cfg.setDefaults()
	keks, tks, _ := policyNames(cfg, tenants)
	var b strings.Builder
	b.WriteString("# blindpost key management (setup, rotation, re-wrap, trim); includes the gateway's rights.\n")
	for i := range keks {
		for _, k := range []string{keks[i], tks[i]} {
			rule(&b, cfg.Mount+"/keys/"+k, "create", "read", "update")
			rule(&b, cfg.Mount+"/keys/"+k+"/rotate", "update")
		}
		// config could also make a key exportable: allow only these fields.
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"update\"]\n  allowed_parameters = {\n    \"min_decryption_version\" = []\n    \"min_encryption_version\" = []\n  }\n}\n",
			cfg.Mount+"/keys/"+keks[i]+"/config")
		rule(&b, cfg.Mount+"/keys/"+keks[i]+"/trim", "update")
	}
	_, gwRules, _ := strings.Cut(gw, "\n")
	b.WriteString(gwRules)
	return b.String(), nil
}

func policyNames(cfg Config, tenants []string) (keks, tks []string, err error) {
	if len(tenants) == 0 {
		// A glob covers both kinds of key (Vault globs only at the end).
		return []string{cfg.KeyPrefix + "*"}, []string{cfg.KeyPrefix + "*"}, nil
	}
	for _, t := range tenants {
		if !validName(t, false) {
			return nil, nil, fmt.Errorf("%w: tenant id is not usable in a Transit key name (want 1-64 of A-Z a-z 0-9 _ -)", vault.ErrInvalid)
		}
		keks = append(keks, cfg.KeyPrefix+t+"-kek")
		tks = append(tks, cfg.KeyPrefix+t+"-token")
	}
	return keks, tks, nil
}

func rule(b *strings.Builder, path string, caps ...string) {
	fmt.Fprintf(b, "path %q {\n  capabilities = [%s]\n}\n", path, `"`+strings.Join(caps, `", "`)+`"`)
}
