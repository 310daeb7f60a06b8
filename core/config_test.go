package core_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/blindpost/blindpost/core"
)

func TestConfigDefaultsAndPaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "core.yaml")
	if err := os.WriteFile(path, []byte("data_dir: data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := core.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := core.Config{
		DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:8080", AdminListen: "127.0.0.1:8081",
		AdminTokenEnv: core.DefaultAdminTokenEnv,
		Store:         core.StoreConfig{Driver: "sqlite", Path: filepath.Join(dir, "data", "core.db")},
	}
	if cfg.DataDir != want.DataDir || cfg.Listen != want.Listen || cfg.AdminListen != want.AdminListen ||
		cfg.AdminTokenEnv != want.AdminTokenEnv || cfg.Store != want.Store {
		t.Errorf("got %+v\nwant %+v", *cfg, want)
	}
}

func TestConfigIsStrict(t *testing.T) {
	_, err := core.ParseConfig(strings.NewReader("data_dir: /d\nlisten_addr: 1.2.3.4:5\n"))
	if !errors.Is(err, core.ErrConfig) || !strings.Contains(err.Error(), "listen_addr") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = core.ParseConfig(strings.NewReader("data_dir: /d\nconnectors:\n  - {kind: dbviews, label: a, poll: soon}\n"))
	if !errors.Is(err, core.ErrConfig) || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name, yaml string
		field      string // every error must name it
	}{
		{"no data dir", "listen: 127.0.0.1:1", "data_dir"},
		{"bad listen", "data_dir: /d\nlisten: nope", "listen"},
		{"public plain http", "data_dir: /d\nlisten: 0.0.0.0:8080", "tls.cert_file"},
		{"key without cert", "data_dir: /d\ntls: {key_file: k}", "tls.cert_file"},
		{"bad admin env", "data_dir: /d\nadmin_token_env: 'has space'", "admin_token_env"},
		{"unknown driver", "data_dir: /d\nstore: {driver: mongo}", "store.driver"},
		{"postgres without dsn", "data_dir: /d\nstore: {driver: postgres}", "store.dsn_env"},
		{"postgres with path", "data_dir: /d\nstore: {driver: postgres, dsn_env: X, path: f.db}", "store.path"},
		{"bad schema", "data_dir: /d\nstore: {driver: postgres, dsn_env: X, schema: 'a;b'}", "store.schema"},
		{"sqlite with dsn", "data_dir: /d\nstore: {dsn_env: X}", "store"},
		{"connector kind", "data_dir: /d\nconnectors: [{kind: nats, label: a}]", "connectors[0].kind"},
		{"connector label", "data_dir: /d\nconnectors: [{kind: kafka, label: 'A B', brokers: ['h:1'], topic: t, group: g}]", "connectors[0].label"},
		{"kafka topic", "data_dir: /d\nconnectors: [{kind: kafka, label: a, brokers: ['h:1'], group: g}]", "connectors[0].topic"},
		{"kafka broker", "data_dir: /d\nconnectors: [{kind: kafka, label: a, brokers: [nohost], topic: t, group: g}]", "connectors[0].brokers[0]"},
		{"kafka with queue", "data_dir: /d\nconnectors: [{kind: kafka, label: a, brokers: ['h:1'], topic: t, group: g, queue: q}]", "connectors[0].queue"},
		{"rabbit url", "data_dir: /d\nconnectors: [{kind: rabbitmq, label: a, queue: q}]", "connectors[0].url_env"},
		{"dbviews driver", "data_dir: /d\nconnectors: [{kind: dbviews, label: a, driver: oracle, dsn_env: D, view: v, watermark: w}]", "connectors[0].driver"},
		{"dbviews view", "data_dir: /d\nconnectors: [{kind: dbviews, label: a, driver: mysql, dsn_env: D, watermark: w}]", "connectors[0].view"},
		{"integer overlap", "data_dir: /d\nconnectors: [{kind: dbviews, label: a, driver: mysql, dsn_env: D, view: v, watermark: w, watermark_type: integer, overlap: 5m}]", "connectors[0].overlap"},
		{"batch size", "data_dir: /d\nconnectors: [{kind: kafka, label: a, brokers: ['h:1'], topic: t, group: g, batch_size: -1}]", "connectors[0].batch_size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := core.ParseConfig(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate()
			if !errors.Is(err, core.ErrConfig) || !strings.Contains(err.Error(), tc.field+": ") {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
}

func TestConfigValidConnectors(t *testing.T) {
	cfg, err := core.ParseConfig(strings.NewReader(`
data_dir: /d
store: {driver: postgres, dsn_env: BLINDPOST_CORE_DSN}
firewall: {pii_properties: [telefono]}
connectors:
  - {kind: kafka, label: acme, brokers: ["k1:9092"], topic: events, group: blindpost}
  - {kind: rabbitmq, label: acme, url_env: AMQP_URL, queue: events, linger: 100ms}
  - {kind: dbviews, label: acme, driver: postgres, dsn_env: PAM_DSN, view: pam.events, watermark: updated_at, poll: 2s}
  - {kind: dbviews, label: acme, driver: mysql, dsn_env: PAM_DSN, view: events, watermark: id, watermark_type: integer, overlap_count: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Schema != "blindpost_core" {
		t.Errorf("schema default %q", cfg.Store.Schema)
	}
	if o := cfg.Connectors[2].Overlap; o == nil || time.Duration(*o) != 5*time.Minute {
		t.Errorf("timestamp watermark overlap default %v, want 5m", o)
	}
	if cfg.Connectors[3].Overlap != nil {
		t.Error("an integer watermark got a time overlap")
	}
	// Marshal gives back a config that loads the same.
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := core.ParseConfig(strings.NewReader(string(b)))
	if err != nil || again.Validate() != nil || len(again.Connectors) != 4 || again.Connectors[1].Linger != cfg.Connectors[1].Linger {
		t.Fatalf("round trip: %v\n%s", err, b)
	}
}

// The commented example operators start from is a valid config, with
// every connector kind and its TLS and SASL settings.
func TestExampleConfigLoads(t *testing.T) {
	cfg, err := core.LoadConfig(filepath.Join("..", "deploy", "core.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, cc := range cfg.Connectors {
		kinds[cc.Kind] = true
	}
	if len(kinds) != 3 || cfg.Store.Driver != "postgres" || len(cfg.GatewayKeys) == 0 {
		t.Errorf("the example no longer shows every connector kind, PostgreSQL and gateway keys: %+v", cfg)
	}
}
