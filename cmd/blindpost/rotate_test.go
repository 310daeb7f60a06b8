package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/blindpost/blindpost/envelope"
	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
	"github.com/blindpost/blindpost/internal/vaultdev"
	"github.com/blindpost/blindpost/tokenmap"
	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/hashivault"
)

// The embedded key file provider is what `keys rotate kek` drives through
// keyFileKeys: this fails to build if its methods drift.
var _ keyFileKeys = (*embedded.LocalKeyProvider)(nil)

// rotationConfig writes a dev gateway config, adjusted by tweak, to a file
// and returns its path and the config as LoadConfig reads it.
func rotationConfig(t *testing.T, tweak func(*gateway.Config)) (string, *gateway.Config) {
	t.Helper()
	dir := t.TempDir()
	if err := devenv.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	cfg := devenv.Config(dir, "127.0.0.1:1", "http://127.0.0.1:1/callbacks")
	tweak(cfg)
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, loaded
}

// openVault opens the config's vault as a serving gateway would.
func openVault(t *testing.T, cfg *gateway.Config) *gateway.Vault {
	t.Helper()
	v, err := gateway.OpenVault(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// testPostgres returns the test server's DSN in $BP_TEST_PG_DSN and a fresh
// schema, dropped after the test.
func testPostgres(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("BLINDPOST_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL unreachable (run scripts/services.sh): %v", err)
		}
		t.Skipf("PostgreSQL unreachable: %v", err)
	}
	conn.Close(context.Background())
	schema := fmt.Sprintf("bp_cli_test_%d", rand.Uint32())
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
			conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			conn.Close(context.Background())
		}
	})
	t.Setenv("BP_TEST_PG_DSN", dsn)
	return schema
}

func sqlConn(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), os.Getenv("BP_TEST_PG_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// startVault runs a Vault dev server with Transit; the root token is in
// $BP_TEST_VAULT_TOKEN.
func startVault(t *testing.T) *vaultdev.Server {
	t.Helper()
	bin, err := vaultdev.Binary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (run scripts/services.sh)", err)
		}
		t.Skip(err)
	}
	s, err := vaultdev.Start(bin, vaultdev.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Mount("transit"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BP_TEST_VAULT_TOKEN", s.RootToken)
	return s
}

func transitConfig(s *vaultdev.Server) hashivault.Config {
	return hashivault.Config{Address: s.Addr, Auth: hashivault.AuthConfig{Method: "token", TokenEnv: "BP_TEST_VAULT_TOKEN"}}
}

func rotRef(i int) vault.Ref {
	return vault.Ref{Tenant: devenv.Tenant, Brand: devenv.Brand, User: fmt.Sprint("rot-", i)}
}

func rotRecord(i int) vault.Record {
	return vault.Record{Email: fmt.Sprintf("rot%d@example.com", i), Phone: fmt.Sprintf("+1555%07d", i)}
}

func putSubjects(t *testing.T, s vault.Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := s.Put(context.Background(), rotRef(i), rotRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func resolveSubjects(t *testing.T, s vault.Store, n int) {
	t.Helper()
	for i := range n {
		rec, err := s.Resolve(context.Background(), rotRef(i))
		if err != nil {
			t.Fatalf("Resolve(%d): %v", i, err)
		}
		if rec.Email != rotRecord(i).Email {
			t.Fatalf("Resolve(%d) gave another record", i)
		}
	}
}

func wantOutput(t *testing.T, out string, err error, wants ...string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

func wrappedKey(t *testing.T, c *pgx.Conn, schema string, ref vault.Ref) []byte {
	t.Helper()
	var w []byte
	if err := c.QueryRow(context.Background(), `SELECT wrapped_key FROM `+schema+`.data_keys WHERE tenant = $1 AND brand = $2 AND user_id = $3`,
		ref.Tenant, ref.Brand, ref.User).Scan(&w); err != nil {
		t.Fatal(err)
	}
	return w
}

// The key file's KEK rotated under a PostgreSQL store while a gateway
// keeps using it; --finish refuses while a key of the old version is left,
// then removes the old version from the key file.
func TestKeysRotateKEKWithAKeyFileAndPostgres(t *testing.T) {
	const n = 30
	schema := testPostgres(t)
	path, cfg := rotationConfig(t, func(c *gateway.Config) {
		c.Vault.Postgres = gateway.PostgresVaultConfig{DSNEnv: "BP_TEST_PG_DSN", Schema: schema}
	})
	gw := openVault(t, cfg) // a serving gateway
	putSubjects(t, gw.Store, 0, n)
	c := sqlConn(t)
	old := wrappedKey(t, c, schema, rotRef(0))

	out, err := runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--batch", "8")
	wantOutput(t, out, err, "rotated the key file", "to version 2", fmt.Sprintf("scanned %d, re-wrapped %d", n, n),
		"oldest KEK version in use 2, latest 2", "--finish")
	resolveSubjects(t, gw.Store, n) // the gateway keeps serving
	putSubjects(t, gw.Store, n, n+5)

	// A key that cannot be re-wrapped (moved to another subject) stops
	// --finish before anything is retired.
	bad := wrappedKey(t, c, schema, rotRef(2))
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := c.Exec(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE `+schema+`.data_keys SET wrapped_key = $1 WHERE user_id = 'rot-2'`, old)
	out, err = runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--finish")
	if err == nil || !strings.Contains(err.Error(), "nothing was retired") {
		t.Fatalf("--finish with a key it cannot re-wrap: %v\n%s", err, out)
	}
	kp, err := embedded.NewKeyFileProvider(cfg.Vault.Embedded.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if vs, err := kp.KEKVersions(); err != nil || !slices.Contains(vs, 1) {
		t.Fatalf("after a refused --finish the key file holds %v, %v; want version 1 kept", vs, err)
	}
	exec(`UPDATE `+schema+`.data_keys SET wrapped_key = $1 WHERE user_id = 'rot-2'`, bad)

	out, err = runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--finish")
	wantOutput(t, out, err, "removed KEK version 1", "closes the erasure window")
	if vs, err := kp.KEKVersions(); err != nil || slices.Contains(vs, 1) {
		t.Fatalf("after --finish the key file holds %v, %v", vs, err)
	}
	resolveSubjects(t, openVault(t, cfg).Store, n+5)
	_, err = kp.Unwrap(context.Background(), devenv.Tenant, old, vault.AssociatedData(rotRef(0), 1))
	if !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("a data key wrapped by the removed version: %v, want ErrCorrupt", err)
	}
}

// The default setup: the embedded store and its key file, rotated while a
// gateway has the same vault file open.
func TestKeysRotateKEKWithTheEmbeddedStore(t *testing.T) {
	const n = 20
	path, cfg := rotationConfig(t, func(*gateway.Config) {})
	gw := openVault(t, cfg)
	putSubjects(t, gw.Store, 0, n)
	// In two steps, as with a key file that several nodes share: rotate,
	// (copy the file), re-wrap.
	out, err := runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--rotate-only")
	wantOutput(t, out, err, "record store: embedded", "to version 2", "nothing was re-wrapped", "--rewrap-only")
	if strings.Contains(out, "re-wrapping") {
		t.Fatalf("--rotate-only re-wrapped:\n%s", out)
	}
	resolveSubjects(t, gw.Store, n)
	out, err = runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--rewrap-only")
	// (vault/embedded counts the tenant's key check as a key.)
	wantOutput(t, out, err, "oldest KEK version in use 2, latest 2")
	if strings.Contains(out, "rotated") {
		t.Fatalf("--rewrap-only rotated:\n%s", out)
	}
	putSubjects(t, gw.Store, n, n+3)
	out, err = runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--finish")
	wantOutput(t, out, err, "re-wrapped 0", "removed KEK version 1")
	resolveSubjects(t, openVault(t, cfg).Store, n+3)
}

// Transit's KEK rotated under a PostgreSQL store: after --finish the old
// versions are trimmed in Vault and an old wrapped key no longer opens.
func TestKeysRotateKEKWithTransitAndPostgres(t *testing.T) {
	const n = 30
	vs := startVault(t)
	schema := testPostgres(t)
	hc := transitConfig(vs)
	path, cfg := rotationConfig(t, func(c *gateway.Config) {
		c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
		c.Vault.Hashicorp = hc
		c.Vault.Postgres = gateway.PostgresVaultConfig{DSNEnv: "BP_TEST_PG_DSN", Schema: schema}
	})
	if out, err := runCLI(t, "", "vault", "setup", "--config", path); err != nil {
		t.Fatalf("vault setup: %v\n%s", err, out)
	}
	gw := openVault(t, cfg)
	putSubjects(t, gw.Store, 0, n)
	c := sqlConn(t)
	old := wrappedKey(t, c, schema, rotRef(0))

	// The operator's token comes from another variable than the config's.
	t.Setenv("BP_TEST_OPERATOR_TOKEN", vs.RootToken)
	out, err := runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--token-env", "BP_TEST_OPERATOR_TOKEN")
	wantOutput(t, out, err, "tenant dev: rotated the KEK to version 2", fmt.Sprintf("scanned %d, re-wrapped %d", n, n),
		"oldest KEK version in use 2, latest 2")
	resolveSubjects(t, gw.Store, n)

	out, err = runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--finish", "--no-trim")
	wantOutput(t, out, err, "min_decryption_version to 2", "not destroyed")
	out, err = runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--finish")
	wantOutput(t, out, err, "versions below 2 are destroyed", "closes the erasure window")
	st, err := gw.Transit.KeyStatus(context.Background(), "blindpost-dev-kek")
	if err != nil || st.MinAvailableVersion != 2 || st.MinDecryptionVersion != 2 {
		t.Fatalf("KeyStatus = %+v, %v; want versions below 2 trimmed", st, err)
	}
	resolveSubjects(t, gw.Store, n)
	resolveSubjects(t, openVault(t, cfg).Store, n) // a restarted node's key check opens
	if _, err := gw.Keys.Unwrap(context.Background(), devenv.Tenant, old, vault.AssociatedData(rotRef(0), 1)); !errors.Is(err, vault.ErrCorrupt) {
		t.Fatalf("a data key wrapped by a trimmed version: %v, want ErrCorrupt", err)
	}
}

// The KV store seals nothing with the KEK: the rotation says so, and
// trimming loses no record.
func TestKeysRotateKEKWithTransitAndKV(t *testing.T) {
	vs := startVault(t)
	path, cfg := rotationConfig(t, func(c *gateway.Config) {
		c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
		c.Vault.Hashicorp = transitConfig(vs)
		c.Vault.KV = gateway.KVVaultConfig{Enabled: true}
	})
	if out, err := runCLI(t, "", "vault", "setup", "--config", path); err != nil {
		t.Fatalf("vault setup: %v\n%s", err, out)
	}
	gw := openVault(t, cfg)
	putSubjects(t, gw.Store, 0, 5)
	out, err := runCLI(t, "", "keys", "rotate", "kek", "--config", path)
	wantOutput(t, out, err, "no data keys to re-wrap", "scanned 0, re-wrapped 0")
	out, err = runCLI(t, "", "keys", "rotate", "kek", "--config", path, "--finish")
	wantOutput(t, out, err, "versions below 2 are destroyed")
	resolveSubjects(t, gw.Store, 5)
}

func TestKeysRotateKEKRefusesWhatItCannotRotate(t *testing.T) {
	path, _ := rotationConfig(t, func(c *gateway.Config) {
		c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", "BP_TEST_PASSPHRASE"
	})
	t.Setenv("BP_TEST_PASSPHRASE", "correct horse battery staple")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", path}, "a passphrase is one KEK"},
		{[]string{"--config", path, "--tenant", "nobody"}, `tenant "nobody" is not in the config`},
		{[]string{"--config", path, "--no-trim"}, "--no-trim goes with --finish"},
		{[]string{"--config", path, "--finish", "--rewrap-only"}, "choose one of"},
		{[]string{"--config", path, "--token-env", "X"}, "--token-env needs vault.hashicorp"},
		{[]string{}, "--config is required"},
	} {
		out, err := runCLI(t, "", append([]string{"keys", "rotate", "kek"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("keys rotate kek %v: %v, want %q\n%s", tc.args, err, tc.want, out)
		}
	}
}

// A new HPKE key is written next to the current one under a name of its
// own, and the printed key list is a config the gateway accepts.
func TestKeysRotateHPKEWritesANewKeyBesideTheOld(t *testing.T) {
	path, cfg := rotationConfig(t, func(*gateway.Config) {})
	dir := filepath.Dir(cfg.Keys.HPKE[0])
	before, _ := os.ReadDir(dir)
	out, err := runCLI(t, "", "keys", "rotate", "hpke", "--out", dir, "--config", path)
	wantOutput(t, out, err, cfg.Keys.HPKE[0], "keys.hpke", "fingerprint SHA256:")
	after, _ := os.ReadDir(dir)
	var added []string
	for _, e := range after {
		if !slices.ContainsFunc(before, func(b os.DirEntry) bool { return b.Name() == e.Name() }) {
			added = append(added, e.Name())
		}
	}
	if len(added) != 2 {
		t.Fatalf("added %v, want a .key and a .pub (no temporary directory, no signing key)", added)
	}
	newKey := filepath.Join(dir, added[0])
	k, err := envelope.LoadRecipientKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	if added[0] != "hpke-"+string(k.ID)+".key" || added[1] != "hpke-"+string(k.ID)+".pub" {
		t.Fatalf("new files %v do not carry the key id %s", added, k.ID)
	}
	if fi, _ := os.Stat(newKey); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", newKey, fi.Mode().Perm())
	}
	if !strings.Contains(out, "- "+newKey) {
		t.Fatalf("the printed key list lacks the new key:\n%s", out)
	}
	// The config with both keys is one the gateway takes.
	cfg.Keys.HPKE = append(cfg.Keys.HPKE, newKey)
	b, _ := cfg.Marshal()
	both := filepath.Join(t.TempDir(), "both.yaml")
	os.WriteFile(both, b, 0o600)
	if out, err := runCLI(t, "", "config", "check", both); err != nil {
		t.Fatalf("config check with both keys: %v\n%s", err, out)
	}
}

func TestKeysRotateSigningWritesANewCoreKey(t *testing.T) {
	dir := t.TempDir()
	if out, err := runCLI(t, "", "keys", "generate", "core", "--out", dir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := runCLI(t, "", "keys", "rotate", "signing", "--out", dir)
	wantOutput(t, out, err, "core_keys", "switch the core to")
	matches, _ := filepath.Glob(filepath.Join(dir, "signing-*.key"))
	if len(matches) != 1 {
		t.Fatalf("new signing keys: %v", matches)
	}
	k, err := envelope.LoadSigningKey(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := envelope.LoadVerifyingKey(strings.TrimSuffix(matches[0], ".key") + ".pub")
	if err != nil || pub.ID != k.ID || filepath.Base(matches[0]) != "signing-"+string(k.ID)+".key" {
		t.Fatalf("new key %s: public kid %v, %v; private kid %s", matches[0], pub, err, k.ID)
	}
	old, err := envelope.LoadSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil || old.ID == k.ID {
		t.Fatalf("the old key is gone or the same: %v", err)
	}
}

// writeConfig writes cfg over the config file at path, as an operator
// editing it would, and returns it as LoadConfig reads it.
func writeConfig(t *testing.T, path string, cfg *gateway.Config) *gateway.Config {
	t.Helper()
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	return loaded
}

// restart closes a serving gateway's vault and opens it again with cfg:
// one node's rolling restart.
func restart(t *testing.T, old *gateway.Vault, cfg *gateway.Config) *gateway.Vault {
	t.Helper()
	old.Close()
	return openVault(t, cfg)
}

// tokenSubjects are the subjects of the token rotation tests: rotRecord's,
// and two more that share one address (one pair in the file).
func tokenSubjects() map[vault.Ref]vault.Record {
	m := map[vault.Ref]vault.Record{}
	for i := range 12 {
		m[rotRef(i)] = rotRecord(i)
	}
	m[rotRef(100)] = vault.Record{Email: "shared@example.com"}
	m[rotRef(101)] = vault.Record{Email: "shared@example.com", Phone: "+15559990101"}
	return m
}

func putRecords(t *testing.T, s vault.Store, recs map[vault.Ref]vault.Record) {
	t.Helper()
	for ref, rec := range recs {
		if _, err := s.Put(context.Background(), ref, rec); err != nil {
			t.Fatal(err)
		}
	}
}

// wantPairs is the pairs file the records must give: one pair per
// distinct address, from version from to version to.
func wantPairs(t *testing.T, kp vault.KeyProvider, recs map[vault.Ref]vault.Record, from, to int) map[string]tokenmap.Pair {
	t.Helper()
	want := map[string]tokenmap.Pair{}
	for ref, rec := range recs {
		pairs, err := vault.RecordTokenPairs(context.Background(), kp, ref.Tenant, from, to, rec)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pairs {
			want[p.Old] = tokenmap.Pair{Tenant: ref.Tenant, Kind: string(p.Kind), Old: p.Old, New: p.New}
		}
	}
	return want
}

// readPairs reads a pairs file, verifies its signature with the gateway's
// signing.pub as the core does, and checks it holds exactly want.
func readPairs(t *testing.T, path string, cfg *gateway.Config, want map[string]tokenmap.Pair) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := envelope.LoadVerifyingKey(strings.TrimSuffix(cfg.Keys.Signing, ".key") + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := os.ReadFile(path + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyTokenPairs(b, sig, pub); err != nil {
		t.Fatalf("the pairs file does not verify: %v", err)
	}
	tampered := bytes.Replace(b, []byte(`"new":"tok_`), []byte(`"new":"tok_x`), 1)
	if err := verifyTokenPairs(tampered, sig, pub); err == nil {
		t.Fatal("a changed pairs file verifies")
	}
	// The core's reader takes it, every pair.
	if f, err := tokenmap.Open(b, sig, []*envelope.VerifyingKey{pub}); err != nil || len(f.Pairs) != len(want) {
		t.Fatalf("tokenmap.Open: %v", err)
	}
	got := map[string]tokenmap.Pair{}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	for _, l := range lines {
		var p tokenmap.Pair
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if _, dup := got[p.Old]; dup {
			t.Fatalf("the pair of %s is in the file twice", p.Old)
		}
		got[p.Old] = p
	}
	if len(got) != len(want) {
		t.Fatalf("the file holds %d pairs, want %d (one per distinct address)", len(got), len(want))
	}
	for old, p := range want {
		if got[old] != p {
			t.Fatalf("pair of %s: %+v, want %+v", old, got[old], p)
		}
	}
}

// verifyTokenPairs checks a pairs file against its signature file, as the
// core must (docs/key-rotation.md §5), written from the document rather
// than with package tokenmap: a second reading of the format.
func verifyTokenPairs(file, sigFile []byte, pub *envelope.VerifyingKey) error {
	var sig struct {
		Format    string `json:"format"`
		File      string `json:"file"`
		SHA256    string `json:"sha256"`
		KeyID     string `json:"kid"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(sigFile, &sig); err != nil {
		return err
	}
	sum := sha256.Sum256(file)
	raw, err := base64.StdEncoding.DecodeString(sig.Signature)
	switch {
	case err != nil:
		return err
	case sig.Format != "blindpost-token-pairs-sig-v1":
		return fmt.Errorf("format %q", sig.Format)
	case sig.KeyID != string(pub.ID):
		return fmt.Errorf("signed by kid %s, not %s", sig.KeyID, pub.ID)
	case sig.SHA256 != hex.EncodeToString(sum[:]):
		return errors.New("the file's SHA-256 differs")
	case !ed25519.Verify(pub.Public, []byte("blindpost-token-pairs-v1\n"+sig.SHA256+"\n"), raw):
		return errors.New("bad signature")
	}
	return nil
}

// lookupAll checks that every address of recs, tokenised under version,
// looks up its subject (want true) or nothing (want false).
func lookupAll(t *testing.T, v *gateway.Vault, recs map[vault.Ref]vault.Record, version int, want bool) {
	t.Helper()
	for ref, rec := range recs {
		toks, err := vault.RecordTokens(context.Background(), v.Keys, ref.Tenant, version, rec)
		if err != nil {
			t.Fatal(err)
		}
		for kind, tok := range toks {
			got, err := v.Store.Lookup(context.Background(), ref.Tenant, ref.Brand, tok)
			switch {
			case want && errors.Is(err, vault.ErrAmbiguous): // the shared address, in one brand
			case want && (err != nil || got != ref):
				t.Fatalf("Lookup(%s %s v%d) = %v, %v", ref.User, kind, version, got, err)
			case !want && !errors.Is(err, vault.ErrNotFound):
				t.Fatalf("Lookup(%s %s v%d) = %v, %v; want ErrNotFound", ref.User, kind, version, got, err)
			}
		}
	}
}

// runTokenRotation drives the whole planned re-tokenisation from version 1
// to 2 against the config at path, with a gateway serving throughout;
// pin sets the pinned version in a config, extra are the CLI's flags for
// Vault.
func runTokenRotation(t *testing.T, path string, cfg *gateway.Config, pin func(*gateway.Config, int), extra ...string) {
	t.Helper()
	dir := t.TempDir()
	first, final := filepath.Join(dir, "pairs-1.ndjson"), filepath.Join(dir, "pairs-2.ndjson")
	rotate := func(args ...string) (string, error) {
		return runCLI(t, "", append(append([]string{"keys", "rotate", "token", "--config", path}, extra...), args...)...)
	}
	recs := tokenSubjects()
	gw := openVault(t, cfg)
	putRecords(t, gw.Store, recs)

	// 1. The config does not index version 2 yet: the command adds the
	// version (Transit) and says what to change.
	out, err := rotate("--to", "2", "--out", first)
	wantOutput(t, out, err, "nothing was re-tokenised yet", "also_index: [2]")
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a pairs file was written before the config indexes version 2: %v", err)
	}

	// 2. Every node indexes version 2 as well; the pass pairs every record.
	cfg.Vault.TokenVersions.AlsoIndex = []int{2}
	cfg = writeConfig(t, path, cfg)
	gw = restart(t, gw, cfg)
	out, err = rotate("--to", "2", "--out", first, "--batch", "5")
	wantOutput(t, out, err, fmt.Sprintf("scanned %d subjects", len(recs)), "wrote "+first, "Tokens of both versions resolve now")
	readPairs(t, first, cfg, wantPairs(t, gw.Keys, recs, 1, 2))
	lookupAll(t, gw, recs, 1, true)
	lookupAll(t, gw, recs, 2, true)
	late := map[vault.Ref]vault.Record{rotRef(200): {Email: "late@example.com"}}
	putRecords(t, gw.Store, late) // a Put after the pass indexes both
	lookupAll(t, gw, late, 1, true)
	lookupAll(t, gw, late, 2, true)

	out, err = rotate("--finish", "--from", "1")
	if err == nil || !strings.Contains(err.Error(), "pins token key version 1") {
		t.Fatalf("--finish before the switch: %v\n%s", err, out)
	}

	// 3. The switch: pin 2, keep indexing 1. A Put now reports version 2.
	pin(cfg, 2)
	cfg.Vault.TokenVersions.AlsoIndex = []int{1}
	cfg = writeConfig(t, path, cfg)
	gw = restart(t, gw, cfg)
	switched := map[vault.Ref]vault.Record{rotRef(201): {Email: "switched@example.com"}}
	putRecords(t, gw.Store, switched)
	sub, err := gw.Store.Put(context.Background(), rotRef(201), switched[rotRef(201)])
	if err != nil || vault.TokenVersionOf(sub.Tokens[vault.KindEmail]) != 2 {
		t.Fatalf("a Put after the switch reports %v, %v; want version 2 tokens", sub.Tokens, err)
	}

	// 4. The final pass: the records Put since the first one are paired too.
	out, err = rotate("--to", "2", "--out", final)
	wantOutput(t, out, err, "This is the final file", "--finish --from 1")
	all := maps.Clone(recs)
	maps.Copy(all, late)
	maps.Copy(all, switched)
	readPairs(t, final, cfg, wantPairs(t, gw.Keys, all, 1, 2))

	out, err = rotate("--finish", "--from", "1")
	if err == nil || !strings.Contains(err.Error(), "still indexes version 1") {
		t.Fatalf("--finish while version 1 is indexed: %v\n%s", err, out)
	}

	// 5. Version 1 is no longer indexed anywhere; its entries go.
	cfg.Vault.TokenVersions.AlsoIndex = nil
	cfg = writeConfig(t, path, cfg)
	gw = restart(t, gw, cfg)
	out, err = rotate("--finish", "--from", "1")
	wantOutput(t, out, err, "dropped", "tokens of version 1 no longer resolve")
	lookupAll(t, gw, all, 1, false)
	lookupAll(t, gw, all, 2, true)
}

func TestKeysRotateTokenWithTheEmbeddedStore(t *testing.T) {
	path, cfg := rotationConfig(t, func(*gateway.Config) {})
	runTokenRotation(t, path, cfg, func(c *gateway.Config, v int) { c.Vault.TokenVersions.Pinned = v })
}

func TestKeysRotateTokenWithTransitAndPostgres(t *testing.T) {
	vs := startVault(t)
	schema := testPostgres(t)
	path, cfg := rotationConfig(t, func(c *gateway.Config) {
		c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
		c.Vault.Hashicorp = transitConfig(vs)
		c.Vault.Postgres = gateway.PostgresVaultConfig{DSNEnv: "BP_TEST_PG_DSN", Schema: schema}
	})
	if out, err := runCLI(t, "", "vault", "setup", "--config", path); err != nil {
		t.Fatalf("vault setup: %v\n%s", err, out)
	}
	t.Setenv("BP_TEST_OPERATOR_TOKEN", vs.RootToken)
	runTokenRotation(t, path, cfg, func(c *gateway.Config, v int) { c.Vault.Hashicorp.TokenKeyVersion = v },
		"--token-env", "BP_TEST_OPERATOR_TOKEN")
	st, err := openVault(t, cfg).Transit.KeyStatus(context.Background(), "blindpost-dev-token")
	if err != nil || st.LatestVersion != 2 {
		t.Fatalf("token key status %+v, %v; want version 2 added", st, err)
	}
}

func TestKeysRotateTokenWithTransitAndKV(t *testing.T) {
	vs := startVault(t)
	path, cfg := rotationConfig(t, func(c *gateway.Config) {
		c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
		c.Vault.Hashicorp = transitConfig(vs)
		c.Vault.KV = gateway.KVVaultConfig{Enabled: true}
	})
	if out, err := runCLI(t, "", "vault", "setup", "--config", path); err != nil {
		t.Fatalf("vault setup: %v\n%s", err, out)
	}
	runTokenRotation(t, path, cfg, func(c *gateway.Config, v int) { c.Vault.Hashicorp.TokenKeyVersion = v })
}

func TestKeysRotateTokenRefusesWhatItCannotDo(t *testing.T) {
	path, _ := rotationConfig(t, func(c *gateway.Config) { c.Vault.TokenVersions.AlsoIndex = []int{2} })
	plain, _ := rotationConfig(t, func(*gateway.Config) {})
	out := filepath.Join(t.TempDir(), "p.ndjson")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", path, "--out", out}, "--to (the new version) is required"},
		{[]string{"--config", path, "--to", "2"}, "--out is required"},
		{[]string{"--config", plain, "--to", "1", "--out", out}, "the config pins version 1 already"},
		{[]string{"--config", path, "--to", "2", "--from", "2", "--out", out}, "--from and --to are both 2"},
		{[]string{"--config", path, "--finish"}, "--from (the old version) is required"},
		{[]string{"--config", path, "--finish", "--from", "1", "--to", "2"}, "go with the pass"},
		{[]string{"--config", path, "--finish", "--from", "1"}, "pins token key version 1"},
		{[]string{"--config", path, "--to", "2", "--out", out, "--token-env", "X"}, "--token-env needs vault.hashicorp"},
		{[]string{"--config", path, "--to", "2", "--out", out, "--tenant", "nobody"}, `tenant "nobody" is not in the config`},
	} {
		got, err := runCLI(t, "", append([]string{"keys", "rotate", "token"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("keys rotate token %v: %v, want %q\n%s", tc.args, err, tc.want, got)
		}
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused command wrote the pairs file: %v", err)
	}
}

// The config refuses token versions that cannot work, naming the field.
func TestConfigCheckValidatesTokenVersions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*gateway.Config)
		want  string
	}{
		{"also the pinned", func(c *gateway.Config) { c.Vault.TokenVersions.AlsoIndex = []int{1} }, "is the pinned version"},
		{"twice", func(c *gateway.Config) { c.Vault.TokenVersions.AlsoIndex = []int{2, 2} }, "listed twice"},
		{"zero", func(c *gateway.Config) { c.Vault.TokenVersions.AlsoIndex = []int{0} }, "want 1 or more"},
		{"negative pin", func(c *gateway.Config) { c.Vault.TokenVersions.Pinned = -1 }, "vault.token_versions.pinned"},
		{"two pins", func(c *gateway.Config) {
			c.Vault.Embedded.KeyFile, c.Vault.Embedded.PassphraseEnv = "", ""
			c.Vault.Hashicorp = hashivault.Config{Address: "http://127.0.0.1:1", TokenKeyVersion: 2}
			c.Vault.TokenVersions.Pinned = 3
		}, "the pin is vault.hashicorp.token_key_version (2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := devenv.Prepare(dir); err != nil {
				t.Fatal(err)
			}
			cfg := devenv.Config(dir, "127.0.0.1:1", "http://127.0.0.1:1/callbacks")
			tc.tweak(cfg)
			b, _ := cfg.Marshal()
			path := filepath.Join(dir, "gateway.yaml")
			os.WriteFile(path, b, 0o600)
			out, err := runCLI(t, "", "config", "check", path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("config check: %v, want %q\n%s", err, tc.want, out)
			}
		})
	}
	// Pinned alike in both places is one pin.
	_, cfg := rotationConfig(t, func(c *gateway.Config) {
		c.Vault.TokenVersions = gateway.TokenVersionsConfig{Pinned: 2, AlsoIndex: []int{1}}
	})
	if cfg.Vault.PinnedTokenVersion() != 2 {
		t.Fatalf("PinnedTokenVersion = %d", cfg.Vault.PinnedTokenVersion())
	}
}
