package core_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/blindpost/blindpost/core"
)

// A Kafka connector over TLS with a SCRAM login, against a broker that
// requires both: the core's config reaches the brokers a production PAM
// runs, and the password comes only from the environment.
func TestKafkaConnectorOverTLSWithSCRAM(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "kafka.test"},
		DNSNames: []string{"kafka.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "kafka-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	password := randomToken()
	const topic = "pam.events"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "core", password))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()

	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	pcl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "kafka.test"}),
		kgo.SASL(scram.Auth{User: "core", Pass: password}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	ctx := context.Background()
	for _, e := range []map[string]any{
		ev("t-1", "acme-casino", "u1", "registration", nil),
		ev("t-2", "acme-casino", "u1", "update_profile", map[string]any{"+tags": "tls"}),
		ev("t-3", "acme-casino", "u1", "login", nil),
	} {
		b, _ := json.Marshal(e)
		if err := pcl.ProduceSync(ctx, &kgo.Record{Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	cfg := testConfig(t)
	env := map[string]string{"KAFKA_PASSWORD": password}
	getenv := func(k string) string { return env[k] }
	prepareLabel(t, cfg, getenv)
	cfg.Connectors = []core.ConnectorConfig{{Kind: core.KindKafka, Label: "acme", Brokers: cluster.ListenAddrs(), Topic: topic, Group: "core",
		TLS:  &core.ConnectorTLS{CAFile: caFile, ServerName: "kafka.test"},
		SASL: &core.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "core", PasswordEnv: "KAFKA_PASSWORD"}}}
	n := start(t, cfg, getenv)
	if ps := waitPlayer(t, n, "acme", "acme-casino", "u1"); strings.Join(ps.Tags, ",") != "tls" {
		t.Errorf("tags %v", ps.Tags)
	}
	if strings.Contains(n.logs.String(), password) {
		t.Error("the SASL password reached the log")
	}
}

func TestConnectorTLSAndSASLConfig(t *testing.T) {
	kafka := func(mod func(*core.ConnectorConfig)) core.ConnectorConfig {
		cc := core.ConnectorConfig{Kind: core.KindKafka, Label: "acme", Brokers: []string{"127.0.0.1:9092"}, Topic: "t", Group: "g"}
		mod(&cc)
		return cc
	}
	cases := []struct {
		name string
		cc   core.ConnectorConfig
		want string // "" = valid
	}{
		{"scram without tls", kafka(func(c *core.ConnectorConfig) {
			c.SASL = &core.KafkaSASL{Mechanism: "SCRAM-SHA-512", Username: "u", PasswordEnv: "P"}
		}), ""},
		{"plain needs tls", kafka(func(c *core.ConnectorConfig) {
			c.SASL = &core.KafkaSASL{Mechanism: "PLAIN", Username: "u", PasswordEnv: "P"}
		}), "connectors[0].sasl.mechanism: PLAIN"},
		{"unknown mechanism", kafka(func(c *core.ConnectorConfig) {
			c.SASL = &core.KafkaSASL{Mechanism: "GSSAPI", Username: "u", PasswordEnv: "P"}
		}), "connectors[0].sasl.mechanism"},
		{"no password env", kafka(func(c *core.ConnectorConfig) {
			c.SASL = &core.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "u"}
		}), "connectors[0].sasl.password_env"},
		{"cert without key", kafka(func(c *core.ConnectorConfig) { c.TLS = &core.ConnectorTLS{CertFile: "c.pem"} }),
			"connectors[0].tls: cert_file and key_file go together"},
		{"sasl on rabbitmq", core.ConnectorConfig{Kind: core.KindRabbitMQ, Label: "acme", URLEnv: "U", Queue: "q",
			SASL: &core.KafkaSASL{Mechanism: "SCRAM-SHA-256", Username: "u", PasswordEnv: "P"}}, "connectors[0].sasl: not a setting of kind rabbitmq"},
		{"tls on dbviews", core.ConnectorConfig{Kind: core.KindDBViews, Label: "acme", Driver: "postgres", DSNEnv: "D", View: "v",
			Watermark: "w", TLS: &core.ConnectorTLS{}}, "connectors[0].tls: not a setting of kind dbviews"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Connectors = []core.ConnectorConfig{tc.cc}
			cfg.SetDefaults()
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
