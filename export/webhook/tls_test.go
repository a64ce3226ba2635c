package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWebhookTLS(t *testing.T) {
	var got int
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := VerifySignature(whSecret, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got++
		mu.Unlock()
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(*whSettings)
		ok   bool
	}{
		{"ca file", func(c *whSettings) { c.TLS.CAFile = ca }, true},
		{"insecure", func(c *whSettings) { c.TLS.InsecureSkipVerify = true }, true},
		{"system roots", nil, false},
	} {
		tr := newWHTransport(t, srv.URL, func(cfg *whSettings) {
			cfg.Attempts = 1
			if c.edit != nil {
				c.edit(cfg)
			}
		})
		n, err := sendWithin(t, t.Context(), tr, whItems(1))
		if c.ok && (n != 1 || err != nil) || !c.ok && (n != 0 || err == nil || !strings.Contains(err.Error(), "certificate")) {
			t.Errorf("%s: Send = %d, %v", c.name, n, err)
		}
	}
	if got != 2 {
		t.Errorf("server accepted %d, want 2", got)
	}
}

// whClientCert makes a CA and a client certificate it signs, and writes
// the client's certificate and key as PEM files.
func whClientCert(t *testing.T) (ca *x509.Certificate, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, key := newKey(), newKey()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "receiver's client CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sensor-gw1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca, certFile, keyFile
}

// TestWebhookMutualTLS: a receiver that requires a client certificate
// accepts the configured one and refuses a sender without it; the
// server name to verify can differ from the URL's host.
func TestWebhookMutualTLS(t *testing.T) {
	ca, certFile, keyFile := whClientCert(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	var clients sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clients.Store(r.TLS.PeerCertificates[0].Subject.CommonName, true)
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	serverCA := filepath.Join(t.TempDir(), "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		cert       bool
		serverName string
		ok         bool
	}{
		{"client certificate", true, "", true},
		{"server name in the certificate", true, "example.com", true}, // httptest's certificate names example.com
		{"server name not in the certificate", true, "other.test", false},
		{"no client certificate", false, "", false},
	} {
		tr := newWHTransport(t, srv.URL, func(cfg *whSettings) {
			cfg.Attempts, cfg.TLS.CAFile, cfg.TLS.ServerName = 1, serverCA, c.serverName
			if c.cert {
				cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
			}
		})
		n, err := sendWithin(t, t.Context(), tr, whItems(1))
		if c.ok != (n == 1 && err == nil) {
			t.Errorf("%s: Send = %d, %v", c.name, n, err)
		}
	}
	if _, ok := clients.Load("sensor-gw1"); !ok {
		t.Error("the receiver never saw the client certificate")
	}
}
