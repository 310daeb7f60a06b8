package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindpost/blindpost/gateway"
	"github.com/blindpost/blindpost/internal/devenv"
)

// nodeSMSC runs the SMPP adapter's test SMSC (the npm smpp package under
// Node.js, an implementation that shares no code with ours) and collects
// the events it prints.
type nodeSMSC struct {
	port  int
	stdin io.WriteCloser
	mu    sync.Mutex
	evs   []map[string]any
}

func startNodeSMSC(t *testing.T) *nodeSMSC {
	t.Helper()
	dir, _ := filepath.Abs(filepath.Join("..", "adapters", "sms", "smpp", "testdata", "smsc"))
	if _, err := exec.LookPath("node"); err != nil || !exists(filepath.Join(dir, "node_modules", "smpp")) {
		if os.Getenv("CI") != "" {
			t.Fatalf("node or the npm smpp package is missing (run scripts/services.sh): %v", err)
		}
		t.Skip("node or the npm smpp package is missing; run scripts/services.sh")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", "smsc.js", "0")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SMSC_SYSTEM_ID=blindpost", "SMSC_PASSWORD=smpp-pw")
	out, _ := cmd.StdoutPipe()
	s := &nodeSMSC{}
	s.stdin, _ = cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	ready := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			if ev["event"] == "listening" {
				ready <- int(ev["port"].(float64))
			}
			s.mu.Lock()
			s.evs = append(s.evs, ev)
			s.mu.Unlock()
		}
	}()
	select {
	case s.port = <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("the SMSC did not start")
	}
	return s
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func (s *nodeSMSC) events(kind string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, ev := range s.evs {
		if ev["event"] == kind {
			out = append(out, ev)
		}
	}
	return out
}

// An SMS goes out over SMPP to the SMSC, and the SMSC's delivery receipt
// (a deliver_sm) comes back to the core as "delivered"; a refused
// destination ends as "bounced" with the SMSC's status as the reason.
func TestSMSOverSMPPWithDeliveryReceipt(t *testing.T) {
	smsc := startNodeSMSC(t)
	t.Setenv("BP_TEST_SMPP_PW", "smpp-pw")
	r := newRig(t, devenv.Options{Gateway: func(c *gateway.Config) {
		c.SMS = gateway.SMSConfig{Adapter: "smpp", SMPP: gateway.SMPPConfig{
			Addr: fmt.Sprintf("127.0.0.1:%d", smsc.port), SystemID: "blindpost", PasswordEnv: "BP_TEST_SMPP_PW", Source: "Casino1"}}
	}})
	ok, refused := alex(), alex()
	ok.Phone, refused.Phone = "+15550100001", "+15550100998"
	r.put("u-1", ok)
	r.put("u-2", refused)
	m1 := message("smpp-1", "u-1")
	m1.Channel, m1.From, m1.Subject, m1.HTML, m1.Text = "sms", "", "", "", "Hi {{pii.first_name}}, your code is 123456"
	m2 := m1
	m2.ID, m2.To.Subject = "smpp-2", "u-2"
	ext := accepted(t, r.send(m1, m2))
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		r.drain()
		if st, _ := r.callback("smpp-2"); st != "" {
			if st, _ := r.callback("smpp-1"); st != "" {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, reason := r.callback("smpp-1"); st != gateway.StatusSent {
		t.Fatalf("smpp-1: %s %s", st, reason)
	}
	if st, reason := r.callback("smpp-2"); st != gateway.StatusBounced || reason != "smpp_0x0000000b" {
		t.Fatalf("smpp-2: %s %s, want bounced smpp_0x0000000b", st, reason)
	}
	var id string
	for _, ev := range smsc.events("submit_sm") {
		if ev["destination_addr"] == "15550100001" {
			id, _ = ev["message_id"].(string)
			if ev["text"] != "Hi "+alexName+", your code is 123456" || ev["source_addr"] != "Casino1" {
				t.Errorf("submit_sm %v", ev)
			}
		}
	}
	if id == "" {
		t.Fatal("the SMSC saw no submit_sm for the player")
	}
	fmt.Fprintf(smsc.stdin, `{"cmd":"receipt","id":%q,"stat":"DELIVRD","err":"000"}`+"\n", id)
	for time.Now().Before(deadline) {
		r.drain()
		if st, _ := r.callback("smpp-1"); st == gateway.StatusDelivered {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var got []string
	for _, p := range r.env.Core.Received() {
		if p.ExtMessageID == ext[0] {
			got = append(got, p.Status)
		}
	}
	if strings.Join(got, ",") != "sent,delivered" {
		t.Fatalf("callbacks for smpp-1: %v, want sent then delivered", got)
	}
}
