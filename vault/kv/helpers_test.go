package kv_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/blindpost/blindpost/vault"
	"github.com/blindpost/blindpost/vault/embedded"
	"github.com/blindpost/blindpost/vault/kv"
)

var ctx = context.Background()

func newKey(t testing.TB) *embedded.LocalKeyProvider {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := embedded.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	kp, err := embedded.NewKeyFileProvider(path)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func mustClient(t testing.TB, token string) *api.Client {
	t.Helper()
	c, err := needVault(t).client(token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// env is one test's view of Vault: a Store under a prefix of its own, so
// tests do not see each other's secrets.
type env struct {
	s      *kv.Store
	kp     vault.KeyProvider
	raw    *api.Client // root client for raw reads, as an auditor would
	prefix string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	d := needVault(t)
	e := &env{kp: newKey(t), raw: d.Root, prefix: "bp-" + randomHex(6)}
	e.s = e.store(t, mustClient(t, d.RootToken))
	return e
}

// store returns another Store on the same prefix and key, through client c:
// a second gateway node.
func (e *env) store(t testing.TB, c *api.Client) *kv.Store {
	t.Helper()
	s, err := kv.New(c, e.kp, kv.Options{Prefix: e.prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustPut(t testing.TB, s vault.Store, ref vault.Ref, rec vault.Record) vault.Subject {
	t.Helper()
	sub, err := s.Put(ctx, ref, rec)
	if err != nil {
		t.Fatalf("Put(%v): %v", ref, err)
	}
	return sub
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want an error matching %v", what, err, want)
	}
}

// The layout documented in the package comment, written out again here so
// that a change to it shows up as a failing test.
func seg(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

func (e *env) subjectKey(ref vault.Ref) string {
	return e.prefix + "/" + seg(ref.Tenant) + "/" + seg(ref.Brand) + "/subjects/" + seg(ref.User)
}

func (e *env) tokenDir(tenant, brand, token string) string {
	return e.prefix + "/" + seg(tenant) + "/" + seg(brand) + "/tokens/" + token
}

func (e *env) tokenKey(ref vault.Ref, token string) string {
	return e.tokenDir(ref.Tenant, ref.Brand, token) + "/" + seg(ref.User)
}

// rawGet reads a Vault path with the root token and returns the HTTP status
// and body.
func rawGet(t testing.TB, c *api.Client, path string, params url.Values) (int, []byte) {
	t.Helper()
	resp, err := c.Logical().ReadRawWithDataWithContext(ctx, path, params)
	if resp == nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(resp.Body)
	if rerr != nil {
		t.Fatalf("GET %s: %v", path, rerr)
	}
	if err != nil && resp.StatusCode != 404 {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, body
}

// list returns the keys of a KV v2 metadata folder (nil if it is empty).
func list(t testing.TB, c *api.Client, dir string) []string {
	t.Helper()
	status, body := rawGet(t, c, "secret/metadata/"+dir, url.Values{"list": {"true"}})
	if status == 404 {
		return nil
	}
	var r struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return r.Data.Keys
}

// leaves lists every secret under dir, recursively.
func leaves(t testing.TB, c *api.Client, dir string) []string {
	t.Helper()
	var out []string
	for _, k := range list(t, c, dir) {
		if strings.HasSuffix(k, "/") {
			out = append(out, leaves(t, c, dir+"/"+strings.TrimSuffix(k, "/"))...)
		} else {
			out = append(out, dir+"/"+k)
		}
	}
	return out
}

// versions returns the version numbers KV's metadata of key lists, and its
// current version.
func versions(t testing.TB, c *api.Client, key string) ([]int, int) {
	t.Helper()
	status, body := rawGet(t, c, "secret/metadata/"+key, nil)
	if status == 404 {
		return nil, 0
	}
	var r struct {
		Data struct {
			CurrentVersion int            `json:"current_version"`
			Versions       map[string]any `json:"versions"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("metadata %s: %v", key, err)
	}
	var vs []int
	for v := range r.Data.Versions {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("metadata %s: version %q", key, v)
		}
		vs = append(vs, n)
	}
	return vs, r.Data.CurrentVersion
}

// dump reads, with the root token, every version of every secret under
// prefix and its metadata: everything Vault will hand out about the store.
func dump(t testing.TB, c *api.Client, prefix string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, key := range leaves(t, c, prefix) {
		_, meta := rawGet(t, c, "secret/metadata/"+key, nil)
		out["secret/metadata/"+key] = meta
		vs, _ := versions(t, c, key)
		for _, v := range vs {
			_, body := rawGet(t, c, "secret/data/"+key, url.Values{"version": {strconv.Itoa(v)}})
			out["secret/data/"+key+"?version="+strconv.Itoa(v)] = body
		}
	}
	return out
}
