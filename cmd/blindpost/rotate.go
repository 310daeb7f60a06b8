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
	"github.com/blindpost/blindpost/tokenmap"
	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/hashivault"
	"github.com/blindpost/blindpost/vault/kv"
)

// runKeysRotate is `blindpost keys rotate kek|token|hpke|signing`: see
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
		return rotateToken(ctx, c, args[1:])
	}
	return fmt.Errorf("keys rotate: want kek, token, hpke or signing, got %q", args[0])
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
	tenants, err := rotationTenants(cfg, only, "keys rotate kek")
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
// be among them. cmd names the command in errors.
func rotationTenants(cfg *gateway.Config, only []string, cmd string) ([]string, error) {
	var all []string
	for _, t := range cfg.Tenants {
		all = append(all, t.ID)
	}
	if len(only) == 0 {
		if len(all) == 0 {
			return nil, fmt.Errorf("%s: the config names no tenants", cmd)
		}
		return all, nil
	}
	for _, t := range only {
		if !slices.Contains(all, t) {
			return nil, fmt.Errorf("%s: tenant %q is not in the config", cmd, t)
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

// rotateToken is the planned re-tokenisation (docs/key-rotation.md §5).
// Without --finish it adds the new token key version if Transit lacks it
// and, once the config indexes that version, runs the pass that indexes
// every record under it and writes the signed pairs file for the core.
// With --finish it drops the old version's index entries, once the config
// pins a newer version.
func rotateToken(ctx context.Context, c *cli, args []string) error {
	fs := flags(c, "keys rotate token")
	path := fs.String("config", "", "gateway config file (YAML)")
	to := fs.Int("to", 0, "the new token key version")
	from := fs.Int("from", 0, "the old token key version (default: the pinned one; after the switch, the one also_index names)")
	out := fs.String("out", "", "the pairs file to write (NDJSON); its signature goes to FILE.sig")
	finish := fs.Bool("finish", false, "drop the index entries of --from, once every node pins a newer version and no longer indexes it")
	batch := fs.Int("batch", 0, "subjects per transaction (default 256)")
	tokenEnv := fs.String("token-env", "", "log in to Vault with the operator token in this environment variable (to add the token key version)")
	var only stringList
	fs.Var(&only, "tenant", "tenant to re-tokenise (repeatable; default: every tenant of the config)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("keys rotate token: unexpected argument %q", pos[0])
	}
	if err := need("config", *path); err != nil {
		return err
	}
	if *finish {
		if *from < 1 {
			return errors.New("keys rotate token --finish: --from (the old version) is required")
		}
		if *to != 0 || *out != "" {
			return errors.New("keys rotate token --finish: --to and --out go with the pass, not with --finish")
		}
	} else {
		if *to < 1 {
			return errors.New("keys rotate token: --to (the new version) is required")
		}
		if err := need("out", *out); err != nil {
			return err
		}
	}
	cfg, err := gateway.LoadConfig(*path)
	if err != nil {
		return err
	}
	if *tokenEnv != "" {
		if cfg.Vault.Hashicorp.Address == "" {
			return errors.New("keys rotate token: --token-env needs vault.hashicorp in the config")
		}
		cfg.Vault.Hashicorp.Auth = hashivault.AuthConfig{Method: hashivault.AuthToken, TokenEnv: *tokenEnv}
	}
	tenants, err := rotationTenants(cfg, only, "keys rotate token")
	if err != nil {
		return err
	}
	pin, also := cfg.Vault.PinnedTokenVersion(), cfg.Vault.TokenVersions.AlsoIndex
	if *finish {
		switch {
		case pin <= *from:
			return fmt.Errorf("keys rotate token --finish: the config pins token key version %d: pin the new version on every node first (docs/key-rotation.md §5); nothing was dropped", pin)
		case slices.Contains(also, *from):
			return fmt.Errorf("keys rotate token --finish: the config still indexes version %d (vault.token_versions.also_index): remove it on every node and restart them first; nothing was dropped", *from)
		}
	} else if *from == 0 {
		if *from, err = tokenFrom(pin, also, *to); err != nil {
			return err
		}
	}
	if !*finish && *from == *to {
		return fmt.Errorf("keys rotate token: --from and --to are both %d", *to)
	}
	v, err := gateway.OpenVault(ctx, cfg, c.logger())
	if err != nil {
		return err
	}
	defer v.Close()
	rt, ok := v.Store.(vault.Retokenizer)
	if !ok {
		return fmt.Errorf("keys rotate token: the record store (%T) cannot re-tokenise (not supported yet)", v.Store)
	}
	w := c.stdout
	fmt.Fprintf(w, "record store: %s; tenants: %s; pinned token key version %d%s\n",
		storeName(v.Store), strings.Join(tenants, ", "), pin, alsoText(also))
	if *finish {
		return finishToken(ctx, w, rt, tenants, *from, pin, *path)
	}
	if v.Transit != nil {
		for _, t := range tenants {
			if err := ensureTokenKeyVersion(ctx, w, v.Transit, t, *from, *to); err != nil {
				return err
			}
		}
	}
	if *to != pin && !slices.Contains(also, *to) {
		fmt.Fprintf(w, `
nothing was re-tokenised yet: the config does not index token key version %d. Next, on every node:
  vault:
    token_versions:
      also_index: [%d]
then check the config (blindpost config check FILE), restart each node in turn (every node must
index both versions before the pass), and run this command again.
`, *to, *to)
		return nil
	}
	return retokenize(ctx, w, rt, tenants, vault.RetokenOptions{From: *from, To: *to, Batch: *batch}, *out, cfg, *path, pin)
}

// tokenFrom is the default --from: the pinned version while the pin is the
// old one, and after the switch the one other version the config indexes.
func tokenFrom(pin int, also []int, to int) (int, error) {
	if pin != to {
		return pin, nil
	}
	var others []int
	for _, v := range also {
		if v != to {
			others = append(others, v)
		}
	}
	if len(others) != 1 {
		return 0, fmt.Errorf("keys rotate token: the config pins version %d already: name the old version with --from", to)
	}
	return others[0], nil
}

func alsoText(also []int) string {
	if len(also) == 0 {
		return ""
	}
	return fmt.Sprintf(", also indexed %v", also)
}

// ensureTokenKeyVersion makes sure the tenant's Transit token key has
// version to, adding it when it is the next one, and has version from.
func ensureTokenKeyVersion(ctx context.Context, w io.Writer, p *hashivault.Provider, tenant string, from, to int) error {
	name, err := p.TokenKeyName(tenant)
	if err != nil {
		return err
	}
	st, err := p.KeyStatus(ctx, name)
	if err != nil {
		return fmt.Errorf("keys rotate token: tenant %s: %w", tenant, err)
	}
	switch {
	case st.LatestVersion == to-1:
		n, err := p.RotateTokenKey(ctx, tenant)
		if err != nil {
			return fmt.Errorf("keys rotate token: tenant %s: add version %d of %s: %w (an operator token: --token-env)", tenant, to, name, err)
		}
		if n != to {
			return fmt.Errorf("keys rotate token: tenant %s: %s is at version %d after the rotation, want %d", tenant, name, n, to)
		}
		fmt.Fprintf(w, "tenant %s: added version %d of the Transit token key %s (no node uses it yet)\n", tenant, to, name)
	case st.LatestVersion < to:
		return fmt.Errorf("keys rotate token: tenant %s: %s is at version %d: --to %d would skip versions", tenant, name, st.LatestVersion, to)
	}
	if from > st.LatestVersion || from < st.MinAvailableVersion {
		return fmt.Errorf("keys rotate token: tenant %s: %s has no version %d", tenant, name, from)
	}
	return nil
}

// retokenize runs the pass over every tenant and writes the pairs file and
// its signature.
func retokenize(ctx context.Context, w io.Writer, rt vault.Retokenizer, tenants []string, opts vault.RetokenOptions,
	out string, cfg *gateway.Config, path string, pin int) error {
	key, err := envelope.LoadSigningKey(cfg.Keys.Signing)
	if err != nil {
		return fmt.Errorf("keys rotate token: the gateway's signing key: %w", err)
	}
	dir, base := filepath.Dir(out), filepath.Base(out)
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("keys rotate token: %w", err)
	}
	defer os.Remove(f.Name()) // after a failure; a rename leaves nothing to remove
	defer f.Close()
	pw := tokenmap.NewWriter(f)
	for _, t := range tenants {
		// A shared address is one pair: its tokens are the same for every
		// subject of the tenant, whatever the brand.
		seen := map[string]struct{}{}
		emit := func(p vault.TokenPair) error {
			if _, dup := seen[p.Old]; dup {
				return nil
			}
			seen[p.Old] = struct{}{}
			return pw.Write(tokenmap.Pair{Tenant: t, Kind: string(p.Kind), Old: p.Old, New: p.New})
		}
		fmt.Fprintf(w, "tenant %s: indexing every record under token key version %d as well (pairs from version %d)\n", t, opts.To, opts.From)
		start := time.Now()
		st, err := rt.Retokenize(ctx, t, opts, emit)
		took := time.Since(start)
		rate := ""
		if st.Scanned > 0 {
			rate = fmt.Sprintf(" (%.0f subjects/s)", float64(st.Scanned)/took.Seconds())
		}
		fmt.Fprintf(w, "tenant %s: scanned %d subjects, added %d index entries; %d addresses gave %d distinct pairs; in %v%s\n",
			t, st.Scanned, st.Added, st.Pairs, len(seen), took.Round(time.Millisecond), rate)
		if err != nil {
			return fmt.Errorf("keys rotate token: tenant %s: %w; no pairs file was written, run the command again (what is indexed stays)", t, err)
		}
	}
	if err := pw.Flush(); err != nil {
		return fmt.Errorf("keys rotate token: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("keys rotate token: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keys rotate token: %w", err)
	}
	sig, err := tokenmap.Sign(key, base, pw.Sum())
	if err != nil {
		return fmt.Errorf("keys rotate token: %w", err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return fmt.Errorf("keys rotate token: %w", err)
	}
	if err := writeFileAtomic(out+".sig", sig); err != nil {
		return fmt.Errorf("keys rotate token: %w", err)
	}
	syncDir(dir)
	fmt.Fprintf(w, "\nwrote %s and its signature %s (gateway signing key kid=%s)\n", out, out+".sig", key.ID)
	if len(tenants) > 1 {
		fmt.Fprintln(w, "note: the file holds several tenants; a core applies a file of its own label only: for a vendor, run this with --tenant")
	}
	if pin != opts.To {
		fmt.Fprintf(w, `
Tokens of both versions resolve now, on every node. Next:
1. Give the vendor the file and its signature:
     %[1]s
     %[1]s.sig
   The vendor applies them on the core (blindpost core tokens apply --config core.yaml --pairs FILE,
   or its admin API): it verifies the signature with the gateway's signing.pub and rewrites every
   old token it stores into the new one.
2. On every node pin the new version and keep indexing the old one, check, restart each in turn:
     %[2]s
     vault.token_versions.also_index: [%[3]d]
3. Run this command again (--to %[4]d --out another file): it pairs the records Put since this pass,
   whose old tokens the PAM got meanwhile, and writes the complete, final file for the core.
`, out, pinText(cfg, opts.To), opts.From, opts.To)
		return nil
	}
	fmt.Fprintf(w, `
This is the final file: every node pins version %[2]d, so no old token has been handed out since the
switch. Next:
1. Give the vendor the file and its signature; the core verifies and applies them as before:
     %[1]s
     %[1]s.sig
2. On every node remove %[3]d from vault.token_versions.also_index, check, restart each in turn.
3. Drop the old entries:
     blindpost keys rotate token --config %[4]s --finish --from %[3]d
`, out, opts.To, opts.From, path)
	return nil
}

// pinText is the setting that pins token key version v in this config.
func pinText(cfg *gateway.Config, v int) string {
	if cfg.Vault.Hashicorp.Address != "" {
		return fmt.Sprintf("vault.hashicorp.token_key_version: %d", v)
	}
	return fmt.Sprintf("vault.token_versions.pinned: %d", v)
}

// finishToken drops the index entries of the old version in every tenant.
func finishToken(ctx context.Context, w io.Writer, rt vault.Retokenizer, tenants []string, from, pin int, path string) error {
	for _, t := range tenants {
		n, err := rt.DropTokenVersion(ctx, t, from)
		if errors.Is(err, vault.ErrNotRetokenized) {
			return fmt.Errorf("keys rotate token --finish: tenant %s: %w\nrun `blindpost keys rotate token --config %s --to %d --from %d --out FILE`, give the core the file, then --finish again",
				t, err, path, pin, from)
		}
		if err != nil {
			return fmt.Errorf("keys rotate token --finish: tenant %s: %w", t, err)
		}
		fmt.Fprintf(w, "tenant %s: dropped %d index entries of token key version %d\n", t, n, from)
	}
	fmt.Fprintf(w, `
done: tokens of version %d no longer resolve; only version %d does. Messages the core still
addresses by an old token fail as unknown recipients: the core must have applied the final pairs file.
`, from, pin)
	return nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, synced and renamed over it, mode 0600.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
