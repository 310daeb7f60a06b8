package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/core/event"
	"github.com/blindpost/blindpost/core/store"
)

// crashChildEnv names the store ("sqlite:PATH" or "postgres:SCHEMA") a
// re-executed test binary ingests into until it is killed.
const crashChildEnv = "BLINDPOST_CORE_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		crashChild(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func specConfig(spec string) store.Config {
	if schema, ok := strings.CutPrefix(spec, "postgres:"); ok {
		return store.Config{Driver: store.DriverPostgres, DSN: dsn(), Schema: schema}
	}
	return store.Config{Path: strings.TrimPrefix(spec, "sqlite:")}
}

// crashChild ingests small batches from several goroutines, so that calls
// share commits, and prints each eid once Ingest has acknowledged it.
func crashChild(spec string) {
	s, err := store.Open(context.Background(), specConfig(spec))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				var evs []event.Event
				for j := range 5 {
					eid := fmt.Sprintf("w%d-%d-%d", w, i, j)
					evs = append(evs, event.Event{EID: eid, EventDate: 1, Brand: "b1", User: fmt.Sprintf("u%d", j),
						Type: event.TypeUpdateProfile, Payload: map[string]any{"+seen": eid}})
				}
				if _, err := s.Ingest(context.Background(), "acme", evs, nil); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				for _, e := range evs {
					fmt.Fprintln(out, e.EID)
				}
				out.Flush() // acknowledged means the parent may see it
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// Invariant 6: nothing acknowledged is lost across kill -9, and the
// players' state agrees with the events stored.
func TestAcknowledgedEventsSurviveKill9(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *backend) {
		if be.name == sqliteTinyCache {
			t.Skip("the child opens the file with the default cache: as the sqlite subtest")
		}
		s := be.open(t)
		mustLabel(t, s, "acme")
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		spec := "sqlite:" + be.cfg.Path
		if be.cfg.Driver == store.DriverPostgres {
			spec = "postgres:" + be.cfg.Schema
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+spec)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[string]bool{}
		sc := bufio.NewScanner(stdout)
		deadline := time.Now().Add(10 * time.Second)
		killed := false
		for sc.Scan() {
			acked[sc.Text()] = true
			// Kill mid-stream, while other calls are in flight, then drain
			// what the child printed before it died: acknowledged too.
			if !killed && (len(acked) >= 2000 || time.Now().After(deadline)) {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			}
		}
		cmd.Wait()
		if !killed {
			t.Fatalf("child exited on its own after %d acknowledged events", len(acked))
		}
		if len(acked) == 0 {
			t.Fatal("child acknowledged nothing before the kill")
		}

		s = be.open(t)
		stored, err := s.StoredEvents(t.Context(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		byUser := map[string][]string{}
		have := map[string]bool{}
		for _, e := range stored {
			have[e.EID] = true
			byUser[e.User] = append(byUser[e.User], e.EID)
		}
		for eid := range acked {
			if !have[eid] {
				t.Errorf("acknowledged %s is not stored after kill -9", eid)
			}
		}
		for user, eids := range byUser {
			p := mustPlayer(t, s, "acme", user)
			var seen []string
			for _, v := range p.Properties["seen"].([]any) {
				seen = append(seen, v.(string))
			}
			slices.Sort(seen)
			slices.Sort(eids)
			if !slices.Equal(seen, eids) {
				t.Errorf("%s: %d updates applied, %d events stored", user, len(seen), len(eids))
			}
		}
		t.Logf("%d acknowledged, %d stored (the difference was in flight)", len(acked), len(stored))
	})
}
