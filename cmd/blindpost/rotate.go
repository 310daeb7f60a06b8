package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
	"github.com/blindpost/blindpost/vault/kv"
)

// runKeysRotate is `blindpost keys rotate kek|hpke|signing`: see
// docs/key-rotation.md for when to run each, and what to do around it.
func runKeysRotate(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(c.stderr, keysUsage)
		return errUsage
	}
	switch args[0] {
	case "kek":
		return rotateKEK(ctx, c, args[1:])
	case "hpke":
		return rotateKeyPair(c, "hpke", args[1:])
	case "signing":
		return rotateKeyPair(c, "signing", args[1:])
	case "token":
		return errors.New("keys rotate token: a planned re-tokenisation is not built yet; see docs/key-rotation.md")
	}
	return fmt.Errorf("keys rotate: want kek, hpke or signing, got %q", args[0])
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// kekKeys is the key-encryption key a config names, as the rotation sees
// it: Transit's per-tenant keys or the embedded key file's versions.
type kekKeys interface {
	// name says where the KEK lives, for the output.
	name() string
	// shared reports one KEK for every tenant (the key file).
	shared() bool
	// rotate adds a KEK version and returns it.
	rotate(ctx context.Context, tenant string) (int, error)
	// latest is the version Wrap uses now.
	latest(ctx context.Context, tenant string) (int, error)
	// retire makes versions below v unusable: reversibly (refused from now
	// on) and, with destroy, for good. It returns what it did, in words.
	retire(ctx context.Context, tenant string, v int, destroy bool) ([]string, error)
}

// rotateKEK rotates the KEK and re-wraps every data key under the new
// version, or with --finish checks that no key of an old version is left
// and retires the old versions.
func rotateKEK(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "keys rotate kek")
	path := fs.String("config", "", "gateway config file (YAML)")
	finish := fs.Bool("finish", false, "re-wrap again, then retire the old KEK versions if no key uses them")
	noTrim := fs.Bool("no-trim", false, "with --finish on Transit: only raise min_decryption_version (reversible), do not destroy the old versions")
	rotateOnly := fs.Bool("rotate-only", false, "add the KEK version, re-wrap nothing (a key file shared by several nodes: copy it to them, then --rewrap-only)")
	rewrapOnly := fs.Bool("rewrap-only", false, "re-wrap under the newest KEK version, rotate nothing (to resume a pass)")
	batch := fs.Int("batch", 0, "subjects per re-wrap transaction (default 256)")
	tokenEnv := fs.String("token-env", "", "log in to Vault with the operator token in this environment variable instead of the config's auth")
	var only stringList
	fs.Var(&only, "tenant", "tenant to rotate (repeatable; default: every tenant of the config)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("keys rotate kek: unexpected argument %q", pos[0])
	}
	if err := need("config", *path); err != nil {
		return err
	}
	if *noTrim && !*finish {
		return errors.New("keys rotate kek: --no-trim goes with --finish")
	}
	if n := countSet(*finish, *rotateOnly, *rewrapOnly); n > 1 {
		return errors.New("keys rotate kek: choose one of --finish, --rotate-only and --rewrap-only")
	}
	cfg, err := gateway.LoadConfig(*path)
	if err != nil {
		return err
	}
	if *tokenEnv != "" {
		if cfg.Vault.Hashicorp.Address == "" {
			return errors.New("keys rotate kek: --token-env needs vault.hashicorp in the config")
		}
		cfg.Vault.Hashicorp.Auth = hashivault.AuthConfig{Method: hashivault.AuthToken, TokenEnv: *tokenEnv}
	}
	tenants, err := rotationTenants(cfg, only)
	if err != nil {
		return err
	}
	v, err := gateway.OpenVault(ctx, cfg, c.logger())
	if err != nil {
		return err
	}
	defer v.Close()
	keys, err := kekOf(cfg, v)
	if err != nil {
		return err
	}
	if keys.shared() {
		if len(only) > 0 {
			return fmt.Errorf("keys rotate kek: %s is one KEK for every tenant: leave out --tenant", keys.name())
		}
		// Every tenant the store holds shares it, configured or not.
		if lister, ok := v.Store.(interface {
			Tenants(context.Context) ([]string, error)
		}); ok {
			stored, err := lister.Tenants(ctx)
			if err != nil {
				return err
			}
			for _, t := range stored {
				if !slices.Contains(tenants, t) {
					tenants = append(tenants, t)
				}
			}
		}
	}
	rw, ok := v.Store.(vault.Rewrapper)
	if !ok {
		return fmt.Errorf("keys rotate kek: the record store (%T) cannot re-wrap data keys yet (not supported yet)", v.Store)
	}
	out := c.stdout
	fmt.Fprintf(out, "KEK: %s; record store: %s; tenants: %s\n", keys.name(), storeName(v.Store), strings.Join(tenants, ", "))
	if _, isKV := v.Store.(*kv.Store); isKV {
		fmt.Fprintln(out, "note: the kv store seals nothing with the KEK (Vault's barrier encrypts its records): there are no data keys to re-wrap")
	}
	opts := vault.RewrapOptions{Batch: *batch}
	if *finish {
		return finishKEK(ctx, out, keys, rw, tenants, opts, !*noTrim)
	}
	return rotateAndRewrap(ctx, out, keys, rw, tenants, opts, *path, !*rewrapOnly, !*rotateOnly)
}

func countSet(flags ...bool) int {
	n := 0
	for _, f := range flags {
		if f {
			n++
		}
	}
	return n
}

func rotateAndRewrap(ctx context.Context, out io.Writer, keys kekKeys, rw vault.Rewrapper, tenants []string, opts vault.RewrapOptions, path string, rotate, rewrap bool) error {
	for i, t := range tenants {
		if !rotate || keys.shared() && i > 0 {
			break
		}
		n, err := keys.rotate(ctx, t)
		if err != nil {
			return fmt.Errorf("rotate the KEK of %s: %w", t, err)
		}
		if keys.shared() {
			fmt.Fprintf(out, "rotated %s to version %d: new data keys are wrapped by it from now on\n", keys.name(), n)
		} else {
			fmt.Fprintf(out, "tenant %s: rotated the KEK to version %d: new data keys are wrapped by it from now on\n", t, n)
		}
	}
	if !rewrap {
		if keys.shared() {
			fmt.Fprintln(out, "\ndone: the new version wraps new data keys; nothing was re-wrapped yet. Copy the key file to every\nother node that uses it now, then run")
		} else {
			fmt.Fprintln(out, "\ndone: the new version wraps new data keys; nothing was re-wrapped yet. To re-wrap, run")
		}
		fmt.Fprintf(out, "  blindpost keys rotate kek --config %s --rewrap-only\n", path)
		return nil
	}
	var failed []string
	for _, t := range tenants {
		st, latest, err := rewrapTenant(ctx, out, keys, rw, t, opts)
		if err != nil {
			fmt.Fprintf(out, "tenant %s: %v\n", t, err)
			failed = append(failed, t)
			continue
		}
		if st.Oldest != 0 && st.Oldest < latest {
			fmt.Fprintf(out, "tenant %s: keys of KEK version %d remain (a Put racing the pass); --finish re-wraps them\n", t, st.Oldest)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("keys rotate kek: the re-wrap failed for %s; the rotation stands, run `blindpost keys rotate kek --config %s --rewrap-only` to resume", strings.Join(failed, ", "), path)
	}
	fmt.Fprintf(out, `
done: every data key is wrapped by the new KEK version; the old versions still unwrap.
next: take a fresh backup of the record store (it holds only keys of the new version), then run
  blindpost keys rotate kek --config %s --finish
to retire the old versions. Until they are destroyed, backups taken before this pass, and the data
keys of subjects erased since that they hold, can still be opened.
`, path)
	return nil
}

// rewrapTenant runs one pass over a tenant and prints its stats.
func rewrapTenant(ctx context.Context, out io.Writer, keys kekKeys, rw vault.Rewrapper, tenant string, opts vault.RewrapOptions) (vault.RewrapStats, int, error) {
	fmt.Fprintf(out, "tenant %s: re-wrapping data keys\n", tenant)
	start := time.Now()
	st, err := rw.Rewrap(ctx, tenant, opts)
	took := time.Since(start)
	rate := ""
	if st.Rewrapped > 0 {
		rate = fmt.Sprintf(" (%.0f keys/s)", float64(st.Rewrapped)/took.Seconds())
	}
	latest, lerr := keys.latest(ctx, tenant)
	fmt.Fprintf(out, "tenant %s: scanned %d, re-wrapped %d in %v%s; oldest KEK version in use %s, latest %d\n",
		tenant, st.Scanned, st.Rewrapped, took.Round(time.Millisecond), rate, oldestText(st.Oldest), latest)
	if err == nil {
		err = lerr
	}
	return st, latest, err
}

func oldestText(v int) string {
	if v == 0 {
		return "none (no wrapped keys)"
	}
	return fmt.Sprint(v)
}

// finishKEK re-wraps once more and, if no tenant has a key of an old
// version left, retires the old versions. It retires nothing unless every
// tenant is ready.
func finishKEK(ctx context.Context, out io.Writer, keys kekKeys, rw vault.Rewrapper, tenants []string, opts vault.RewrapOptions, destroy bool) error {
	latest := map[string]int{}
	var blocked []string
	for _, t := range tenants {
		st, l, err := rewrapTenant(ctx, out, keys, rw, t, opts)
		if err != nil {
			return fmt.Errorf("keys rotate kek --finish: tenant %s: %w; nothing was retired", t, err)
		}
		if st.Oldest != 0 && st.Oldest < l {
			blocked = append(blocked, fmt.Sprintf("%s (version %d)", t, st.Oldest))
		}
		latest[t] = l
	}
	if len(blocked) > 0 {
		return fmt.Errorf("keys rotate kek --finish: data keys of an old KEK version remain for %s: run the pass again; nothing was retired",
			strings.Join(blocked, ", "))
	}
	for i, t := range tenants {
		if keys.shared() && i > 0 {
			break
		}
		did, err := keys.retire(ctx, t, latest[t], destroy)
		if err != nil {
			return fmt.Errorf("keys rotate kek --finish: tenant %s: %w", t, err)
		}
		for _, d := range did {
			fmt.Fprintln(out, d)
		}
	}
	if destroy {
		fmt.Fprintln(out, `
done: the old KEK versions are destroyed. This closes the erasure window of backups: every copy of a
data key wrapped by them (database backups, WAL archives, snapshots taken before the re-wrap,
including the keys of subjects erased since) can no longer be opened. Backups taken before the
re-wrap cannot be restored any more; those taken after it can.`)
		if keys.shared() {
			fmt.Fprintln(out, `Copies of the key file kept elsewhere (its backups, snapshots) still hold the removed versions:
destroy them too, or the window stays open for whoever holds such a copy and an old backup.`)
		}
	} else {
		fmt.Fprintln(out, `
done: the old KEK versions are refused from now on, but not destroyed: backups taken before the
re-wrap can still be opened once the minimum is lowered again. Run --finish without --no-trim to
destroy them and close the erasure window of backups.`)
	}
	return nil
}

// rotationTenants is the config's tenants, or those of --tenant, which must
// be among them.
func rotationTenants(cfg *gateway.Config, only []string) ([]string, error) {
	var all []string
	for _, t := range cfg.Tenants {
		all = append(all, t.ID)
	}
	if len(only) == 0 {
		if len(all) == 0 {
			return nil, errors.New("keys rotate kek: the config names no tenants")
		}
		return all, nil
	}
	for _, t := range only {
		if !slices.Contains(all, t) {
			return nil, fmt.Errorf("keys rotate kek: tenant %q is not in the config", t)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(only))), nil
}

func storeName(s vault.Store) string {
	name := fmt.Sprintf("%T", s)
	name = strings.TrimPrefix(name, "*")
	name, _, _ = strings.Cut(name, ".")
	return name
}

// kekOf returns the KEK the opened vault uses.
func kekOf(cfg *gateway.Config, v *gateway.Vault) (kekKeys, error) {
	if v.Transit != nil {
		return transitKEK{v.Transit}, nil
	}
	kf, ok := v.Keys.(keyFileKeys)
	if !ok || cfg.Vault.Embedded.KeyFile == "" {
		if cfg.Vault.Embedded.PassphraseEnv != "" {
			return nil, errors.New("keys rotate kek: a passphrase is one KEK with no versions: move the records to a vault keyed by a key file (export and import), see docs/key-rotation.md")
		}
		return nil, fmt.Errorf("keys rotate kek: the embedded key provider (%T) cannot rotate its key file (not supported yet)", v.Keys)
	}
	return keyFileKEK{kf, cfg.Vault.Embedded.KeyFile}, nil
}

// transitKEK is each tenant's Transit key <prefix><tenant>-kek.
type transitKEK struct{ p *hashivault.Provider }

func (k transitKEK) name() string { return "Vault Transit (vault.hashicorp)" }
func (k transitKEK) shared() bool { return false }

func (k transitKEK) rotate(ctx context.Context, tenant string) (int, error) {
	return k.p.RotateKEK(ctx, tenant)
}

func (k transitKEK) latest(ctx context.Context, tenant string) (int, error) {
	st, err := k.status(ctx, tenant)
	return st.LatestVersion, err
}

func (k transitKEK) status(ctx context.Context, tenant string) (hashivault.KeyStatus, error) {
	name, err := k.p.KEKName(tenant)
	if err != nil {
		return hashivault.KeyStatus{}, err
	}
	return k.p.KeyStatus(ctx, name)
}

func (k transitKEK) retire(ctx context.Context, tenant string, v int, destroy bool) ([]string, error) {
	st, err := k.status(ctx, tenant)
	if err != nil {
		return nil, err
	}
	var did []string
	if st.MinDecryptionVersion < v {
		if err := k.p.SetMinDecryptionVersion(ctx, tenant, v); err != nil {
			return did, err
		}
		did = append(did, fmt.Sprintf("tenant %s: raised %s min_decryption_version to %d: older versions are refused", tenant, st.Name, v))
	}
	if !destroy {
		return did, nil
	}
	if st.MinAvailableVersion >= v {
		return append(did, fmt.Sprintf("tenant %s: %s has no version below %d left to destroy", tenant, st.Name, v)), nil
	}
	if err := k.p.TrimKEK(ctx, tenant, v); err != nil {
		return did, err
	}
	return append(did, fmt.Sprintf("tenant %s: trimmed %s: versions below %d are destroyed", tenant, st.Name, v)), nil
}

// keyFileKeys is the embedded key provider of a key file
// (embedded.LocalKeyProvider).
type keyFileKeys interface {
	vault.KEKVersioner
	RotateKEK() (int, error)
	RetireKEK(v int) error
	KEKVersions() ([]int, error)
}

// keyFileKEK is the embedded key file's KEK versions, one for every tenant.
type keyFileKEK struct {
	kp   keyFileKeys
	path string
}

func (k keyFileKEK) name() string                                { return "the key file " + k.path }
func (k keyFileKEK) shared() bool                                { return true }
func (k keyFileKEK) rotate(context.Context, string) (int, error) { return k.kp.RotateKEK() }

func (k keyFileKEK) latest(context.Context, string) (int, error) {
	vs, err := k.kp.KEKVersions()
	if err != nil || len(vs) == 0 {
		return 0, fmt.Errorf("key file versions: %w", err)
	}
	return slices.Max(vs), nil
}

func (k keyFileKEK) retire(_ context.Context, _ string, v int, destroy bool) ([]string, error) {
	if !destroy {
		return nil, errors.New("--no-trim applies to Transit only: the key file has no reversible minimum; leave it out to retire the old versions")
	}
	vs, err := k.kp.KEKVersions()
	if err != nil {
		return nil, fmt.Errorf("key file versions: %w", err)
	}
	var did []string
	for _, old := range vs {
		if old >= v {
			continue
		}
		if err := k.kp.RetireKEK(old); err != nil {
			return did, err
		}
		did = append(did, fmt.Sprintf("removed KEK version %d from %s (its old blocks overwritten; copies of the file in backups still hold it until they are destroyed)", old, k.path))
	}
	if len(did) == 0 {
		did = append(did, fmt.Sprintf("%s holds no version below %d", k.path, v))
	}
	return did, nil
}

// rotateKeyPair writes a new HPKE key pair (gateway side) or core signing
// key pair (core side) next to the current ones, under names that carry
// the key id, and prints the configuration change.
func rotateKeyPair(c *cli, kind string, args []string) error {
	fs := flags(c, "keys rotate "+kind)
	out := fs.String("out", "", "key directory: the new files are written next to the current ones")
	path := fs.String("config", "", "the gateway config, to print the exact new key list (optional)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("keys rotate %s: unexpected argument %q", kind, pos[0])
	}
	if err := need("out", *out); err != nil {
		return err
	}
	var cfg *gateway.Config
	if *path != "" {
		if cfg, err = gateway.LoadConfig(*path); err != nil {
			return err
		}
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys rotate %s: %w", kind, err)
	}
	// envelope writes fixed names: generate in a private directory beside
	// the keys (the same filesystem, so the files can be linked over),
	// then give them names of their own.
	tmp, err := os.MkdirTemp(dir, ".rotate-")
	if err != nil {
		return fmt.Errorf("keys rotate %s: %w", kind, err)
	}
	defer os.RemoveAll(tmp) // with the unused half of WriteGatewayKeys
	var (
		priv, pub, prefix string
		id                envelope.KeyID
		fingerprint       string
	)
	switch kind {
	case "hpke":
		if err := envelope.WriteGatewayKeys(tmp, rand.Reader); err != nil {
			return fmt.Errorf("keys rotate hpke: %w", err)
		}
		k, err := envelope.LoadRecipientPublicKey(filepath.Join(tmp, envelope.FileHPKEPub))
		if err != nil {
			return err
		}
		priv, pub, prefix, id, fingerprint = envelope.FileHPKEKey, envelope.FileHPKEPub, "hpke-", k.ID, envelope.Fingerprint(k.Bytes())
	default:
		if err := envelope.WriteCoreKeys(tmp, rand.Reader); err != nil {
			return fmt.Errorf("keys rotate signing: %w", err)
		}
		k, err := envelope.LoadVerifyingKey(filepath.Join(tmp, envelope.FileSigningPub))
		if err != nil {
			return err
		}
		priv, pub, prefix, id, fingerprint = envelope.FileSigningKey, envelope.FileSigningPub, "signing-", k.ID, envelope.Fingerprint(k.Public)
	}
	newPriv := filepath.Join(dir, prefix+string(id)+".key")
	newPub := filepath.Join(dir, prefix+string(id)+".pub")
	// Link, not rename: a link never replaces an existing file.
	if err := os.Link(filepath.Join(tmp, priv), newPriv); err != nil {
		return fmt.Errorf("keys rotate %s: %w", kind, err)
	}
	if err := os.Link(filepath.Join(tmp, pub), newPub); err != nil {
		os.Remove(newPriv)
		return fmt.Errorf("keys rotate %s: %w", kind, err)
	}
	syncDir(dir)
	w := c.stdout
	if kind == "hpke" {
		fmt.Fprintf(w, "generated HPKE key kid=%s\n  %s (private, 0600: stays on the gateway hosts)\n  %s (for the core)\n  fingerprint %s\n\n",
			id, newPriv, newPub, fingerprint)
		fmt.Fprintln(w, "1. On every gateway node, add the new key to keys.hpke after the current ones, check, and restart:")
		fmt.Fprintln(w, "     keys:\n       hpke:")
		if cfg != nil {
			for _, p := range cfg.Keys.HPKE {
				fmt.Fprintf(w, "         - %s\n", p)
			}
		} else {
			fmt.Fprintln(w, "         - <the current keys, unchanged>")
		}
		fmt.Fprintf(w, "         - %s   # new\n", newPriv)
		fmt.Fprintln(w, "   Every key listed opens envelopes; `blindpost config check FILE` first.")
		fmt.Fprintf(w, "2. Give the vendor %s and its fingerprint; compare the fingerprint over a second channel.\n", newPub)
		fmt.Fprintln(w, "   The core seals to the newest key it knows.")
		fmt.Fprintf(w, "3. When no envelope has named the old kid for the envelope window plus the core's retry horizon\n"+
			"   (new envelopes name kid=%s), remove the old key from keys.hpke, restart, and destroy its file.\n", id)
		return nil
	}
	fmt.Fprintf(w, "generated core signing key kid=%s\n  %s (private, 0600: stays with the core)\n  %s (for the operator)\n  fingerprint %s\n\n",
		id, newPriv, newPub, fingerprint)
	fmt.Fprintf(w, "1. Send %s and its fingerprint to the operator; they compare the fingerprint over a second channel\n", newPub)
	fmt.Fprintln(w, "   and, on every gateway node, pin it next to the current key, check, and restart:")
	fmt.Fprintln(w, "     tenants:")
	if cfg != nil {
		for _, t := range cfg.Tenants {
			fmt.Fprintf(w, "       - id: %s\n         core_keys:\n", t.ID)
			for _, p := range t.CoreKeys {
				fmt.Fprintf(w, "           - %s\n", p)
			}
			fmt.Fprintf(w, "           - <gateway path of %s>   # new\n", filepath.Base(newPub))
		}
	} else {
		fmt.Fprintf(w, "       - id: <tenant>\n         core_keys:\n           - <the current key, unchanged>\n           - <gateway path of %s>   # new\n", filepath.Base(newPub))
	}
	fmt.Fprintf(w, "2. Once every gateway node pins it, switch the core to %s.\n", newPriv)
	fmt.Fprintln(w, "3. When no envelope signed by the old key has arrived for the core's retry horizon (`blindpost audit export`:")
	fmt.Fprintln(w, "   the envelope_accepted records' kid_sender), the operator removes the old key from core_keys; destroy the old signing key.")
	return nil
}

// syncDir makes the new names durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
