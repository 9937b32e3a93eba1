package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/config"
)

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answers only when the client gives up
	}))
	defer hang.Close()
	tlsOK := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
	defer tlsOK.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/healthz"
	ln.Close()

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"healthy", []string{"--url", ok.URL + "/healthz"}, 0, "healthy: GET", ""},
		{"not found", []string{"--url", ok.URL + "/nope"}, 1, "", "404 Not Found"},
		{"503", []string{"--url", down.URL + "/healthz"}, 1, "", "database unreachable"},
		{"refused", []string{"--url", refused}, 1, "", "connection refused"},
		{"timeout", []string{"--url", hang.URL + "/healthz", "--timeout", "200ms"}, 1, "", "deadline exceeded"},
		{"tls unverified", []string{"--url", tlsOK.URL + "/healthz"}, 1, "", "certificate"},
		{"tls insecure", []string{"--url", tlsOK.URL + "/healthz", "--insecure"}, 0, "healthy", ""},
		{"bad url", []string{"--url", "::nope"}, 2, "", "want a URL"},
		{"stray arg", []string{ok.URL}, 2, "", "unexpected argument"},
		{"help", []string{"--help"}, 0, "", "GET /healthz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"healthcheck"}, tc.args...), &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
				t.Errorf("healthcheck %q = %d\nstdout: %s\nstderr: %s\nwant code %d, stdout containing %q, stderr containing %q",
					tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
			}
		})
	}
}

func TestLocalHealthTarget(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("addr: 0.0.0.0:5443\ntls:\n  cert_file: /c.pem\n  key_file: /k.pem\n"), 0o644)
	for _, tc := range []struct {
		name     string
		cfg      string
		env      map[string]string
		pid1     []string
		url, crt string
		errSub   string
	}{
		{name: "defaults", url: "http://127.0.0.1:5000/healthz"},
		{name: "0.0.0.0", env: map[string]string{"STOWAGE_ADDR": "0.0.0.0:5000"}, url: "http://127.0.0.1:5000/healthz"},
		{name: "no host", env: map[string]string{"STOWAGE_ADDR": ":8080"}, url: "http://127.0.0.1:8080/healthz"},
		{name: "[::]", env: map[string]string{"STOWAGE_ADDR": "[::]:5001"}, url: "http://127.0.0.1:5001/healthz"},
		{name: "[::1]", env: map[string]string{"STOWAGE_ADDR": "[::1]:5001"}, url: "http://[::1]:5001/healthz"},
		{name: "tls from env", env: map[string]string{"STOWAGE_ADDR": "10.1.2.3:443", "STOWAGE_TLS_CERT_FILE": "/c.pem", "STOWAGE_TLS_KEY_FILE": "/k.pem"}, url: "https://10.1.2.3:443/healthz", crt: "/c.pem"},
		{name: "tls from --config", cfg: file, url: "https://127.0.0.1:5443/healthz", crt: "/c.pem"},
		{name: "tls from STOWAGE_CONFIG", env: map[string]string{"STOWAGE_CONFIG": file}, url: "https://127.0.0.1:5443/healthz", crt: "/c.pem"},
		{name: "env over the file", cfg: file, env: map[string]string{"STOWAGE_ADDR": "127.0.0.1:7000"}, url: "https://127.0.0.1:7000/healthz", crt: "/c.pem"},
		{name: "PID 1's --config and --addr", pid1: []string{"--config", file, "--addr=0.0.0.0:9443"}, url: "https://127.0.0.1:9443/healthz", crt: "/c.pem"},
		{name: "bad address", env: map[string]string{"STOWAGE_ADDR": "localhost"}, errSub: "want host:port"},
		{name: "missing file", cfg: filepath.Join(dir, "nope.yaml"), errSub: "or pass --url"},
	} {
		url, crt, err := localHealthTarget(tc.cfg, func(k string) string { return tc.env[k] }, tc.pid1)
		if url != tc.url || crt != tc.crt || (err == nil) != (tc.errSub == "") || err != nil && !strings.Contains(err.Error(), tc.errSub) {
			t.Errorf("%s: localHealthTarget = %q, %q, %v; want %q, %q, error containing %q", tc.name, url, crt, err, tc.url, tc.crt, tc.errSub)
		}
	}
}

// selfSigned writes a self-signed certificate for a public name only (not
// 127.0.0.1), as a registry's own certificate is.
func selfSigned(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestHealthcheckTLS: the real server serving TLS from its configuration
// file, with a certificate for its public name. The health check that
// reads the same configuration (--config, or STOWAGE_CONFIG as the image
// and the chart set it) asks over https and trusts the server's own
// certificate; an explicit --url verifies as any client does, with
// --ca-cert or --insecure as the ways out.
func TestHealthcheckTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := selfSigned(t, dir, "registry.example.com")
	caFile, caCert, caKey := writeTestCA(t, t.TempDir())
	other, _ := selfSigned(t, t.TempDir(), "other.example.com")
	for _, srv := range []struct{ name, cert, key string }{{"own certificate", certFile, keyFile}, {"CA-signed", caCert, caKey}} {
		t.Run(srv.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			cfgFile := filepath.Join(t.TempDir(), "stowage.yaml")
			os.WriteFile(cfgFile, []byte("addr: "+addr+"\ntls:\n  cert_file: "+srv.cert+"\n  key_file: "+srv.key+"\n"), 0o644)
			wrong := filepath.Join(t.TempDir(), "wrong.yaml") // names another certificate
			os.WriteFile(wrong, []byte("addr: "+addr+"\ntls:\n  cert_file: "+other+"\n  key_file: "+srv.key+"\n"), 0o644)
			cfg := config.Default()
			if err := cfg.Load(cfgFile); err != nil {
				t.Fatal(err)
			}
			cfg.DataDir = filepath.Join(t.TempDir(), "data")
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			m := NewMain(cfg, testWriter{t})
			if err := m.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			explicit := "https://" + addr + "/healthz"
			for _, tc := range []struct {
				name     string
				args     []string
				env      string // STOWAGE_CONFIG
				code     int
				out, err string
			}{
				{name: "--config", args: []string{"--config", cfgFile}, code: 0, out: "healthy: GET https://" + addr},
				{name: "STOWAGE_CONFIG", env: cfgFile, code: 0, out: "healthy: GET https://"},
				{name: "a certificate the server does not serve", args: []string{"--config", wrong}, code: 1, err: "neither the one in " + other},
				{name: "not its own, but signed by --ca-cert", args: []string{"--config", wrong, "--ca-cert", caFile}, code: map[bool]int{true: 0, false: 1}[srv.name == "CA-signed"]},
				{name: "--url: a client's verification", args: []string{"--url", explicit}, code: 1, err: map[bool]string{true: "--ca-cert", false: "leave out --url"}[srv.name == "CA-signed"]},
				{name: "--url --insecure", args: []string{"--url", explicit, "--insecure"}, code: 0, out: "healthy"},
				{name: "--url --ca-cert", args: []string{"--url", explicit, "--ca-cert", caFile}, code: map[bool]int{true: 0, false: 1}[srv.name == "CA-signed"]},
				{name: "--ca-cert not PEM", args: []string{"--config", cfgFile, "--ca-cert", srv.key + ".nope"}, code: 2, err: "want a PEM file"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					t.Setenv("STOWAGE_CONFIG", tc.env)
					var out, errb bytes.Buffer
					code := run(context.Background(), append([]string{"healthcheck"}, tc.args...), &out, &errb)
					if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
						t.Errorf("healthcheck %q = %d\nstdout: %s\nstderr: %s\nwant code %d, stdout containing %q, stderr containing %q",
							tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
					}
				})
			}
		})
	}
}
