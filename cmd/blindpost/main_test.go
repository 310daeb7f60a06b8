package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/internal/devenv"
)

func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb, stdin: strings.NewReader(stdin)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := run(ctx, c, args)
	return out.String() + errb.String(), err
}

func TestDemoShowsTheWholeJourney(t *testing.T) {
	out, err := runCLI(t, "", "demo")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"accepted", "sent", "denied (opted_out", "delivered", "demo: ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestKeysGenerateWritesPrivateFiles0600AndPrintsFingerprints(t *testing.T) {
	dir := t.TempDir()
	for _, kind := range []string{"gateway", "core", "vault", "unsubscribe"} {
		out, err := runCLI(t, "", "keys", "generate", kind, "--out", filepath.Join(dir, kind))
		if err != nil {
			t.Fatalf("keys generate %s: %v\n%s", kind, err, out)
		}
	}
	for _, p := range []string{"gateway/hpke.key", "gateway/signing.key", "core/signing.key", "vault/vault.key", "unsubscribe/unsubscribe.key"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	out, err := runCLI(t, "", "keys", "public", filepath.Join(dir, "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "hpke (X-Wing)") || !strings.Contains(out, "SHA256:") || !strings.Contains(out, "kid=") {
		t.Errorf("keys public output:\n%s", out)
	}
	if _, err := runCLI(t, "", "keys", "generate", "core", "--out", filepath.Join(dir, "core")); err == nil {
		t.Error("keys generate overwrote existing keys")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "unsubscribe", "unsubscribe.key")); err != nil || len(b) != 32 {
		t.Errorf("unsubscribe.key: %d bytes, %v; want 32", len(b), err)
	}
	if _, err := runCLI(t, "", "keys", "generate", "unsubscribe", "--out", filepath.Join(dir, "unsubscribe")); err == nil {
		t.Error("keys generate overwrote the unsubscribe key")
	}
}

func TestConfigCheck(t *testing.T) {
	if out, err := runCLI(t, "", "config", "check", "../../deploy/gateway.example.yaml"); err != nil {
		t.Fatalf("example config: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:1\nlisten_typo: x\n"), 0o600)
	out, err := runCLI(t, "", "config", "check", bad)
	if err == nil || !strings.Contains(err.Error(), "listen_typo") {
		t.Fatalf("config check of a typo: %v\n%s", err, out)
	}
}

func TestSubjectsAndSendAgainstDevGateway(t *testing.T) {
	dir := t.TempDir()
	env, err := devenv.Start(context.Background(), dir, devenv.Options{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	out, err := runCLI(t, `{"email":"cli.player@example.com","first_name":"Kim"}`,
		"subjects", "put", "--dev", dir, "--brand", devenv.Brand, "--user", "cli-1")
	if err != nil || !strings.Contains(out, "tok_email_v1_") {
		t.Fatalf("subjects put: %v\n%s", err, out)
	}
	if strings.Contains(out, "cli.player@example.com") {
		t.Fatalf("subjects put echoed PII:\n%s", out)
	}
	out, err = runCLI(t, `{"brand":"casino-1","user":"cli-2","record":{"email":"cli.two@example.com"}}
{"brand":"casino-1","user":"cli-3","record":{"email":"not an email"}}
`, "subjects", "import", "--dev", dir)
	if err != nil || !strings.Contains(out, `"imported":1`) {
		t.Fatalf("subjects import: %v\n%s", err, out)
	}
	out, err = runCLI(t, "", "send", "--dev", dir, "--brand", devenv.Brand, "--user", "cli-1",
		"--purpose", "password_reset", "--subject", "Hi {{pii.first_name}}", "--text", "Hello {{pii.first_name}}")
	if err != nil || !strings.Contains(out, `"status": "accepted"`) {
		t.Fatalf("send: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for env.Capture.Count() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if env.Capture.Count() != 1 {
		t.Fatal("the dev gateway delivered nothing")
	}
	if out, err := runCLI(t, "", "subjects", "erase", "--dev", dir, "--brand", devenv.Brand, "--user", "cli-1"); err != nil {
		t.Fatalf("subjects erase: %v\n%s", err, out)
	}
}

func TestPolicyTestRunsTheBundlesOwnTests(t *testing.T) {
	out, err := runCLI(t, "", "policy", "test")
	if err != nil {
		t.Fatalf("policy test: %v\n%s", err, out)
	}
	if !strings.Contains(out, " passed, 0 failed") {
		t.Fatalf("policy test output:\n%s", out)
	}
}

func TestPolicyEvalExplainsADecision(t *testing.T) {
	in := `{"api":"native","stage":"send","tenant":"dev","brand":"casino-1","channel":"email",
		"category":"marketing","purpose":"promotion","placeholders":["first_name"],
		"subject":{"pseudonym":"p1","local_hour":12,"opt_outs":{"core_is_email_disabled":true},"consents":{"marketing_email":true},"addressable":true}}`
	out, err := runCLI(t, in, "policy", "eval", "--input", "-")
	if err != nil {
		t.Fatalf("policy eval: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"allow": false`) || !strings.Contains(out, "opted_out") || !strings.Contains(out, `"revision"`) {
		t.Fatalf("policy eval output:\n%s", out)
	}
}

func TestAuditVerifyShowAndExportWorkWithOnlyTheLogAndPublicKeys(t *testing.T) {
	dir := t.TempDir()
	env, err := devenv.Start(context.Background(), dir, devenv.Options{PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, `{"email":"audit.player@example.com","first_name":"Kim"}`,
		"subjects", "put", "--dev", dir, "--brand", devenv.Brand, "--user", "a-1"); err != nil {
		t.Fatalf("subjects put: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "", "send", "--dev", dir, "--id", "audit-m1", "--brand", devenv.Brand, "--user", "a-1",
		"--purpose", "password_reset", "--subject", "Hi {{pii.first_name}}", "--text", "Hello {{pii.first_name}}"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	if _, err := env.Core.Wait(context.Background(), "audit-m1", "sent"); err != nil {
		t.Fatal(err)
	}
	in := env.Info
	env.Close()

	out, err := runCLI(t, "", "audit", "verify", "--log", in.AuditLog, "--key", in.GatewaySigningPub, "--witness", in.Witness)
	if err != nil || !strings.Contains(out, "audit verify: ok") || !strings.Contains(out, "consistent with all") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	out, err = runCLI(t, "", "audit", "show", "--log", in.AuditLog, "--message", "audit-m1",
		"--core-key", filepath.Join(dir, "keys", "core", "signing.pub"))
	if err != nil || !strings.Contains(out, "proven: the core's key") || !strings.Contains(out, `"kind":"delivery"`) {
		t.Fatalf("audit show: %v\n%s", err, out)
	}
	out, err = runCLI(t, "", "audit", "export", "--log", in.AuditLog, "--from", "2000-01-01T00:00:00Z")
	if err != nil || strings.Count(out, "\n") < 5 {
		t.Fatalf("audit export: %v\n%s", err, out)
	}
	if strings.Contains(out, "audit.player@example.com") || strings.Contains(out, "Kim") {
		t.Fatalf("the audit log holds PII:\n%s", out)
	}

	// One altered byte in the entries and verify fails.
	path := filepath.Join(in.AuditLog, "entries")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("password_reset"))
	if i < 0 {
		t.Fatal("no decision input in the log")
	}
	b[i] = 'P'
	os.WriteFile(path, b, 0o600)
	if out, err := runCLI(t, "", "audit", "verify", "--log", in.AuditLog, "--key", in.GatewaySigningPub); err == nil {
		t.Fatalf("audit verify accepted an altered log:\n%s", out)
	}
}

// config check loads each DKIM key and prints the TXT record to publish;
// a key it cannot use fails the check.
func TestConfigCheckPrintsDKIMRecords(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	os.WriteFile(filepath.Join(dir, "dkim.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "weak.pem"), []byte("not a key"), 0o600)
	base, err := os.ReadFile("../../gateway/testdata/config/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, keyFile string) string {
		cfg := strings.Replace(string(base), "smtp: {addr: \"relay.internal:587\", helo: gateway.example.com, tls: require}",
			"smtp: {addr: \"relay.internal:587\", helo: gateway.example.com, tls: require, dkim: [{domain: example.com, selector: bp1, key_file: "+keyFile+"}]}", 1)
		if cfg == string(base) {
			t.Fatal("the fixture's smtp line changed; update this test")
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(cfg), 0o600)
		return p
	}
	out, err := runCLI(t, "", "config", "check", write("good.yaml", "dkim.pem"))
	if err != nil || !strings.Contains(out, "publish bp1._domainkey.example.com TXT") || !strings.Contains(out, "k=ed25519; p=") {
		t.Fatalf("config check: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "", "config", "check", write("bad.yaml", "weak.pem")); err == nil || !strings.Contains(err.Error(), "smtp.dkim[0]") {
		t.Fatalf("config check with an unusable key: %v", err)
	}
}
