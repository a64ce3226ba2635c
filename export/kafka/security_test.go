package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
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
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/vigil-sensor/vigil/internal/tlsclient"
)

func TestKafkaSASL(t *testing.T) {
	for _, mech := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := newKafkaCluster(t, kfake.EnableSASL(), kfake.Superuser(strings.ToUpper(mech), "vigil", "s3cret"))
			o := kafkaTestOptions(c.ListenAddrs())
			o.SASL = SASLConfig{Mechanism: mech, Username: "vigil", PasswordFile: passwordFile(t, "s3cret\n")}
			x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
			e := newTestKafkaEncoder(t, o)
			for seq := range 50 {
				r := kafkaTestFlow(1, seq)
				x.add(t, e.AppendFlow(nil, &r), kafkaTestFlowsTopic, seq)
			}
			kafkaSendAll(t, newTestKafkaTransport(t, o), x.items, 50)

			var m kgo.Opt
			switch mech {
			case SASLPlain:
				m = kgo.SASL(plain.Auth{User: "vigil", Pass: "s3cret"}.AsMechanism())
			case SASLScramSHA256:
				m = kgo.SASL(scram.Auth{User: "vigil", Pass: "s3cret"}.AsSha256Mechanism())
			default:
				m = kgo.SASL(scram.Auth{User: "vigil", Pass: "s3cret"}.AsSha512Mechanism())
			}
			x.check(t, kafkaConsume(t, o.Brokers, len(x.byValue), []string{kafkaTestFlowsTopic}, m))

			// A wrong password fails within the send timeout, nothing acknowledged.
			bad := o
			bad.SASL = SASLConfig{Mechanism: mech, Username: "vigil", PasswordFile: passwordFile(t, "wrong")}
			bad.SendTimeout.D = 2 * time.Second
			start := time.Now()
			n, err := newTestKafkaTransport(t, bad).Send(context.Background(), x.items[:5])
			if err == nil || n != 0 {
				t.Fatalf("Send with a wrong password = %d, %v; want 0 and an error", n, err)
			}
			if d := time.Since(start); d > bad.SendTimeout.D+kafkaCloseGrace {
				t.Errorf("Send with a wrong password took %v", d)
			}
			t.Logf("wrong password: %v", err)
		})
	}
}

// kafkaTestPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all PEM, into dir.
type kafkaTestPKI struct {
	caFile, certFile, keyFile string
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newKafkaTestPKI(t *testing.T) kafkaTestPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := kafkaTestPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "client.pem"), keyFile: filepath.Join(dir, "client.key")}
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	cert, key := issue(2, "vigil client", x509.ExtKeyUsageClientAuth)
	write(p.certFile, cert)
	write(p.keyFile, key)
	scert, skey := issue(3, "kfake", x509.ExtKeyUsageServerAuth)
	if p.server, err = tls.X509KeyPair(scert, skey); err != nil {
		t.Fatal(err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

func TestKafkaTLS(t *testing.T) {
	pki := newKafkaTestPKI(t)
	// Mutual TLS and SCRAM together: the broker wants a client
	// certificate signed by the CA, then a password.
	c := newKafkaCluster(t,
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.pool, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "vigil", "s3cret"))
	o := kafkaTestOptions(c.ListenAddrs())
	o.TLS = tlsclient.Config{Enabled: true, CAFile: pki.caFile, CertFile: pki.certFile, KeyFile: pki.keyFile}
	o.SASL = SASLConfig{Mechanism: SASLScramSHA256, Username: "vigil", PasswordFile: passwordFile(t, "s3cret")}

	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	e := newTestKafkaEncoder(t, o)
	for seq := range 40 {
		a := kafkaTestAlert(seq%4, seq/4)
		x.add(t, e.AppendAlert(nil, &a), kafkaTestAlertsTopic, seq/4)
	}
	kafkaSendAll(t, newTestKafkaTransport(t, o), x.items, 40)
	clientCert, err := tls.LoadX509KeyPair(pki.certFile, pki.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	x.check(t, kafkaConsume(t, o.Brokers, len(x.byValue), []string{kafkaTestAlertsTopic},
		kgo.DialTLSConfig(&tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}),
		kgo.SASL(scram.Auth{User: "vigil", Pass: "s3cret"}.AsSha256Mechanism())))

	// Each missing piece fails the send, with nothing acknowledged.
	for name, change := range map[string]func(*Config){
		"no client certificate": func(o *Config) { o.TLS.CertFile, o.TLS.KeyFile = "", "" },
		"system roots":          func(o *Config) { o.TLS.CAFile = "" },
		"wrong server name":     func(o *Config) { o.TLS.ServerName = "kafka.example" },
	} {
		bad := o
		change(&bad)
		bad.SendTimeout.D = 2 * time.Second
		n, err := newTestKafkaTransport(t, bad).Send(context.Background(), x.items[:3])
		if err == nil || n != 0 {
			t.Errorf("%s: Send = %d, %v; want 0 and an error", name, n, err)
		}
	}
}

// passwordFile writes a password file.
func passwordFile(t *testing.T, content string) string {
	t.Helper()
	pf := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pf, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return pf
}
