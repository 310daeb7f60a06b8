package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway/queue"
)

// crashChildEnv names the store (a backend's spec) a re-executed test
// binary accepts into until it is killed.
const crashChildEnv = "BLINDPOST_QUEUE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		crashChild(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild accepts from several goroutines, so that calls are
// group-committed, and prints each id once Accept has acknowledged it.
func crashChild(spec string) {
	q, err := openSpec(spec, queue.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := q.Accept(context.Background(), []queue.Item{accepted("t1", id, "u1", request("t1", id))}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintln(out, id)
				out.Flush() // acknowledged means the parent may see it
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// Invariant 6: nothing acknowledged is lost across kill -9.
func TestAcknowledgedAcceptsSurviveKill9(t *testing.T) {
	forEachBackend(t, testAcknowledgedAcceptsSurviveKill9)
}

func testAcknowledgedAcceptsSurviveKill9(t *testing.T, b backend) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+b.spec)
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
		// what the child printed before it died: those were acknowledged too.
		if !killed && (len(acked) >= 500 || time.Now().After(deadline)) {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("child exited on its own after %d acknowledged accepts", len(acked))
	}
	if len(acked) == 0 {
		t.Fatal("child acknowledged nothing before the kill")
	}

	q := b.open(queue.Options{})
	if err := q.ReleaseLeases(context.Background()); err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, e := range mustClaim(t, q, 1_000_000, time.Minute) {
		stored[e.MsgID] = true
	}
	for id := range acked {
		if !stored[id] {
			t.Errorf("acknowledged %s is not in the queue after kill -9", id)
		}
	}
	t.Logf("%d acknowledged, %d stored (the difference was in flight)", len(acked), len(stored))
}
