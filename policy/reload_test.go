package policy_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/blindpost/blindpost/policy"
)

// denyAll denies every message with one reason; with trivialPolicy it
// makes two bundles whose decisions tell which one decided.
const denyAll = `package blindpost.gateway

decision := {"allow": false, "reasons": ["closed"], "obligations": {}}
`

func TestReloadSwapsTheBundle(t *testing.T) {
	var reported []error
	e := mustNew(t, regoFS("decision.rego", trivialPolicy), policy.Options{OnReloadError: func(err error) { reported = append(reported, err) }})
	old := e.Revision()
	if err := e.Reload(context.Background(), regoFS("decision.rego", denyAll)); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	d, err := e.Decide(context.Background(), accept("email", "transactional"))
	if err != nil || d.Allow || d.Reasons[0] != "closed" {
		t.Fatalf("after reload: %v %q %v", d.Allow, d.Reasons, err)
	}
	if d.Revision == old || d.Revision != e.Revision() {
		t.Errorf("decision revision %s, evaluator %s, old %s", d.Revision, e.Revision(), old)
	}
	if s := e.ReloadStats(); s.Reloads != 1 || s.Failures != 0 || len(reported) != 0 {
		t.Errorf("stats %+v, reported %v", s, reported)
	}
}

func TestBrokenReloadKeepsTheRunningBundle(t *testing.T) {
	var reported []error
	e := mustNew(t, policy.BundleFS(), policy.Options{OnReloadError: func(err error) { reported = append(reported, err) }})
	rev := e.Revision()
	broken := []struct {
		name   string
		bundle fstest.MapFS
	}{
		{"syntax error", regoFS("decision.rego", "package blindpost.gateway\n\ndecision := {\n")},
		{"no policy", regoFS("data.json", "{}")},
		{"network builtin", regoFS("decision.rego", "package blindpost.gateway\n\ndecision := http.send({}).body\n")},
		{"invalid settings", func() fstest.MapFS {
			m := copyFS(t, policy.BundleFS())
			m["data.json"] = &fstest.MapFile{Data: mustReplace(t, m["data.json"].Data, `"end": "09:00"`, `"end": "9am"`)}
			return m
		}()},
	}
	for i, b := range broken {
		err := e.Reload(context.Background(), b.bundle)
		if !errors.Is(err, policy.ErrReload) {
			t.Errorf("%s: err = %v, want ErrReload", b.name, err)
		}
		if e.Revision() != rev {
			t.Fatalf("%s: revision changed to %s", b.name, e.Revision())
		}
		if len(reported) != i+1 || !errors.Is(reported[i], policy.ErrReload) {
			t.Errorf("%s: OnReloadError got %v", b.name, reported)
		}
		d, err := e.Decide(context.Background(), benchInput())
		if err != nil || !d.Allow || d.Revision != rev {
			t.Errorf("%s: the old bundle no longer decides: %v %q %v", b.name, d.Allow, d.Reasons, err)
		}
	}
	if s := e.ReloadStats(); s.Reloads != 0 || s.Failures != uint64(len(broken)) {
		t.Errorf("stats %+v", s)
	}
}

// Decisions made while bundles are swapped are each made entirely by one
// bundle, and name it: a decision's result always matches its revision.
func TestReloadIsAtomicForConcurrentDecisions(t *testing.T) {
	allow, deny := regoFS("decision.rego", trivialPolicy), regoFS("decision.rego", denyAll)
	e := mustNew(t, allow, policy.Options{Timeout: 10 * time.Second}) // a loaded machine must not make this a time-out test
	allowRev := e.Revision()
	denyRev := mustNew(t, deny, policy.Options{}).Revision()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var decided atomic.Int64
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := e.Decide(context.Background(), accept("email", "transactional"))
				if err != nil {
					t.Error(err)
					return
				}
				if (d.Revision == allowRev) != d.Allow || (d.Revision != allowRev && d.Revision != denyRev) {
					t.Errorf("decision allow=%v by revision %s", d.Allow, d.Revision)
					return
				}
				decided.Add(1)
			}
		})
	}
	for i := range 20 {
		b := allow
		if i%2 == 0 {
			b = deny
		}
		if err := e.Reload(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	if decided.Load() == 0 {
		t.Fatal("no decisions made during the reloads")
	}
}

func TestReloadFromKeepsOptionsData(t *testing.T) {
	dir := writeBundleDir(t, policy.BundleFS())
	override := map[string]any{"blindpost": map[string]any{"settings": map[string]any{"sender_domains": []string{"example.org"}}}}
	e := mustNew(t, policy.BundleFS(), policy.Options{Data: override})
	if err := e.ReloadFrom(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	in := accept("email", "transactional")
	in.FromDomain = "example.org"
	if d, err := e.Decide(context.Background(), in); err != nil || !d.Allow {
		t.Errorf("override lost on reload: %v %q %v", d.Allow, d.Reasons, err)
	}
}

func TestWatchReloadsChangedBundles(t *testing.T) {
	dir := writeBundleDir(t, policy.BundleFS())
	errs := make(chan error, 10)
	fsys, err := policy.OpenBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := mustNew(t, fsys, policy.Options{OnReloadError: func(err error) { errs <- err }})
	// A broken edit is reported once, and the running bundle stays.
	consent := filepath.Join(dir, "consent.rego")
	good, err := os.ReadFile(consent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(consent, []byte("package blindpost.gateway\n\nbroken := {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rev := e.Revision()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Watch(ctx, dir, 5*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v", err)
		}
	}()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	select {
	case err := <-errs:
		if !errors.Is(err, policy.ErrReload) {
			t.Errorf("reported %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("broken bundle not reported")
	}
	time.Sleep(30 * time.Millisecond)
	if len(errs) != 0 {
		t.Errorf("the same broken bundle was reported %d more times", len(errs))
	}
	if e.Revision() != rev {
		t.Fatal("a broken bundle replaced the running one")
	}

	// Fixing it (with a change) swaps it in. Files are renamed into place,
	// as README.md tells operators, so that Watch never sees half a file.
	tmp := filepath.Join(t.TempDir(), "consent.rego")
	if err := os.WriteFile(tmp, append(good, "\n# reviewed\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, consent); err != nil {
		t.Fatal(err)
	}
	waitFor("the fixed bundle", func() bool { return e.Revision() != rev })
	if s := e.ReloadStats(); s.Reloads != 1 || s.Failures != 1 {
		t.Errorf("stats %+v", s)
	}
}

// copyFS copies the files of fsys into a MapFS.
func copyFS(t testing.TB, fsys fs.FS) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		m[name] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}
