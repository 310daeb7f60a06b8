package smpp_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The SMSC the integration tests talk to is testdata/smsc/smsc.js, built on
// the npm smpp package (pinned in its package-lock.json). Setup for CI:
//
//	npm ci --prefix adapters/sms/smpp/testdata/smsc
//
// The tests run that themselves when node_modules is missing.

const smscDir = "testdata/smsc"

var (
	npmOnce sync.Once
	npmErr  error
	npmOut  []byte
)

// needNode finds node, installing the SMSC's packages once if they are
// missing. Without node or npm the test fails under CI and skips elsewhere.
func needNode(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node not found in PATH (install Node.js >= 18 to run the SMPP integration tests)")
	}
	if _, err := os.Stat(filepath.Join(smscDir, "node_modules", "smpp", "package.json")); err == nil {
		return node
	}
	npmOnce.Do(func() {
		npm, err := exec.LookPath("npm")
		if err != nil {
			npmErr = err
			return
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = smscDir
		npmOut, npmErr = cmd.CombinedOutput()
	})
	if npmErr != nil {
		missing(t, "npm ci in "+smscDir+" failed: "+npmErr.Error()+"\n"+string(npmOut))
	}
	return node
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("SMPP integration test cannot run: %s", why)
	}
	t.Skipf("skipping SMPP integration test (set CI to make this a failure): %s", why)
}

// event is one line of the SMSC's log; which fields are set depends on
// Event.
type event struct {
	Event          string   `json:"event"`
	Port           int      `json:"port"`
	Session        int      `json:"session"`
	Seq            uint32   `json:"seq"`
	SystemID       string   `json:"system_id"`
	SystemType     string   `json:"system_type"`
	SourceAddrTON  int      `json:"source_addr_ton"`
	SourceAddrNPI  int      `json:"source_addr_npi"`
	SourceAddr     string   `json:"source_addr"`
	DestAddrTON    int      `json:"dest_addr_ton"`
	DestAddrNPI    int      `json:"dest_addr_npi"`
	DestAddr       string   `json:"destination_addr"`
	EsmClass       int      `json:"esm_class"`
	RegDelivery    int      `json:"registered_delivery"`
	DataCoding     int      `json:"data_coding"`
	ShortMessage   string   `json:"short_message_hex"`
	UDH            []string `json:"udh_hex"`
	Text           *string  `json:"text"`
	MessageID      string   `json:"message_id"`
	Status         uint32   `json:"status"`
	ID             string   `json:"id"`
	Attempt        int      `json:"attempt"`
	MO             bool     `json:"mo"`
	Cmd            string   `json:"cmd"`
	Sessions       int      `json:"sessions"`
	InterfaceVersn int      `json:"interface_version"`
}

// smsc is a running smsc.js.
type smsc struct {
	t     testing.TB
	Addr  string
	stdin io.WriteCloser

	mu      sync.Mutex
	events  []event
	changed chan struct{} // closed and replaced on every new event
	stderr  bytes.Buffer
}

// startSMSC runs smsc.js on a free loopback port with the extra
// environment, and stops it when the test ends.
func startSMSC(t testing.TB, env ...string) *smsc {
	t.Helper()
	node := needNode(t)
	cmd := exec.Command(node, "smsc.js", "0")
	cmd.Dir = smscDir
	cmd.Env = append(os.Environ(), env...)
	s := &smsc{t: t, changed: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start smsc.js: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = event{Event: "unparsed"}
			}
			s.mu.Lock()
			s.events = append(s.events, e)
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
		close(exited)
	}()
	t.Cleanup(func() {
		s.stdin.Close() // smsc.js exits when its stdin closes
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		cmd.Wait()
		if t.Failed() {
			s.mu.Lock()
			t.Logf("smsc.js stderr:\n%s", s.stderr.String())
			s.mu.Unlock()
		}
	})
	e := s.wait(10*time.Second, func(e event) bool { return e.Event == "listening" })
	s.Addr = "127.0.0.1:" + strconv.Itoa(e.Port)
	return s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// command sends one command to smsc.js and waits until it has run it.
func (s *smsc) command(cmd map[string]any) {
	s.t.Helper()
	before := len(s.all(func(e event) bool { return e.Event == "done" }))
	b, err := json.Marshal(cmd)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		s.t.Fatalf("write to smsc.js: %v", err)
	}
	s.waitN(5*time.Second, before+1, func(e event) bool { return e.Event == "done" })
}

// all returns the events so far that match.
func (s *smsc) all(match func(event) bool) []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []event
	for _, e := range s.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the first event that matches, waiting up to d for it.
func (s *smsc) wait(d time.Duration, match func(event) bool) event {
	s.t.Helper()
	return s.waitN(d, 1, match)[0]
}

// waitN waits up to d for n matching events and returns them.
func (s *smsc) waitN(d time.Duration, n int, match func(event) bool) []event {
	s.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		var got []event
		for _, e := range s.events {
			if match(e) {
				got = append(got, e)
			}
		}
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline.C:
			s.mu.Lock()
			var names []string
			for _, e := range s.events {
				names = append(names, e.Event)
			}
			s.mu.Unlock()
			s.t.Fatalf("smsc.js: %d of %d awaited events after %v; events so far: %s", len(got), n, d, strings.Join(names, " "))
		}
	}
}
