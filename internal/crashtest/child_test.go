package crashtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the blindpost binary built for this test run.
var binDir string

var (
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "blindpost-crashtest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binary builds cmd/blindpost once per test run and returns its path. The
// test runs the binary an operator runs, not an in-process copy: a SIGKILL
// must take the whole process, its goroutines and its open files with it.
func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "blindpost")
	buildOnce.Do(func() {
		// `go test` puts its own toolchain first on PATH.
		cmd := exec.Command("go", "build", "-o", bin, "github.com/blindpost/blindpost/cmd/blindpost")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/blindpost: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// child is one run of `blindpost gateway`.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been waited for
	err  error         // Wait's answer, set before done is closed
}

// exited reports whether the process has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process and waits until it is gone.
func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// stop asks the process to shut down (SIGTERM, as systemd or Kubernetes
// would) and waits up to timeout; then it kills it.
func (c *child) stop(timeout time.Duration) error {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return c.err
	case <-time.After(timeout):
		c.kill()
		return fmt.Errorf("did not exit within %v of SIGTERM; killed", timeout)
	}
}

// startGateway starts `blindpost gateway --config cfg` with its stdout and
// stderr appended to the log file. The child dies with ctx, and
// t.Cleanup kills it if the test left it running.
func startGateway(ctx context.Context, t *testing.T, bin, cfg string, log *os.File) (*child, error) {
	return startChild(ctx, t, bin, log, "gateway", "--config", cfg)
}

// startChild starts `blindpost args...` as startGateway does.
func startChild(ctx context.Context, t *testing.T, bin string, log *os.File, args ...string) (*child, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		if !c.exited() {
			c.kill()
		}
	})
	return c, nil
}

// errExited: the gateway exited while the test waited for it to be ready.
var errExited = errors.New("gateway exited")

// waitReady polls the admin API's /readyz until the gateway answers 200,
// the process exits, or ctx ends.
func waitReady(ctx context.Context, c *child, adminURL string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-c.done:
			return fmt.Errorf("%w: %v", errExited, c.err)
		case <-ctx.Done():
			return fmt.Errorf("gateway not ready: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// freePort returns a loopback address that was free a moment ago. The
// gateway must come back on the same address after every restart, so the
// test picks its ports instead of asking for port 0. They come from below
// Linux's ephemeral range (32768 and up), where the kernel never puts the
// outgoing connections of other processes: a port picked from that range
// could be taken by one while the gateway is down.
func freePort(t *testing.T, rng *rand.Rand) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rng.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no free port in 20000-31999")
	return ""
}

// logExcerpt returns, from the gateway's log, the lines a reader of a
// failure needs: every line that mentions one of needles, every warning
// and error, and the test's own markers, at most max of them, then the
// last tail lines.
func logExcerpt(path string, needles []string, max, tail int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var picked, last []string
	omitted := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		last = append(last, line)
		if len(last) > tail {
			last = last[1:]
		}
		keep := strings.HasPrefix(line, "=== ") || !strings.HasPrefix(line, "{") ||
			strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`)
		for _, n := range needles {
			keep = keep || strings.Contains(line, n)
		}
		if !keep {
			continue
		}
		if len(picked) < max {
			picked = append(picked, line)
		} else {
			omitted++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "--- gateway log %s: markers, warnings, errors and lines naming the messages in question ---\n", path)
	for _, l := range picked {
		b.WriteString(l + "\n")
	}
	if omitted > 0 {
		fmt.Fprintf(&b, "... %d more such lines\n", omitted)
	}
	fmt.Fprintf(&b, "--- last %d lines ---\n", len(last))
	for _, l := range last {
		b.WriteString(l + "\n")
	}
	return b.String()
}
