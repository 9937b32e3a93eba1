package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// selfSigned writes a certificate for 127.0.0.1 and its key into dir and
// returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stowage e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSAndTokenFlow: with a certificate and access control on, the
// registry serves HTTPS only, challenges with an https realm, and a client
// that follows the Docker token flow (go-containerregistry) pushes and
// pulls with a user's password; a client that does not trust the
// certificate, or talks plain HTTP, gets nowhere.
func TestTLSAndTokenFlow(t *testing.T) {
	needServer(t)
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	s := startServer(t, filepath.Join(dir, "data"), "STOWAGE_AUTH=on", "STOWAGE_ADMIN_PASSWORD=e2e-admin-password",
		"STOWAGE_TLS_CERT_FILE="+certFile, "STOWAGE_TLS_KEY_FILE="+keyFile)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	resp, err := client.Get(s.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	challenge := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(challenge, `realm="https://`+s.Addr+`/oauth2/token"`) {
		t.Errorf("GET /v2/ over TLS: %d, challenge %q; want 401 with an https realm", resp.StatusCode, challenge)
	}
	if resp, err := http.Get("http://" + s.Addr + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d, want 400", resp.StatusCode)
		}
	}
	if _, err := (&http.Client{Timeout: 10 * time.Second}).Get(s.URL + "/v2/"); err == nil {
		t.Error("a client that does not trust the certificate connected")
	}

	ref, err := name.NewTag(s.Addr + "/secure/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	admin := remote.WithAuth(&authn.Basic{Username: "admin", Password: "e2e-admin-password"})
	if err := remote.Write(ref, img, remote.WithTransport(tr), admin); err != nil {
		t.Fatalf("push over TLS with the token flow: %v", err)
	}
	got, err := remote.Image(ref, remote.WithTransport(tr), admin)
	if err != nil {
		t.Fatalf("pull over TLS: %v", err)
	}
	wd, _ := img.Digest()
	if gd, _ := got.Digest(); gd != wd {
		t.Errorf("pulled %s, pushed %s", gd, wd)
	}
	bad := remote.WithAuth(&authn.Basic{Username: "admin", Password: "wrong"})
	if _, err := remote.Image(ref, remote.WithTransport(tr), bad); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("pull with a wrong password: %v, want UNAUTHORIZED", err)
	}
	if _, err := remote.Image(ref, remote.WithTransport(tr)); err == nil {
		t.Error("an anonymous pull succeeded with anonymous pull off")
	}
}
