package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/config"
)

// TestErrorsNameTheFix: mistakes on the command line get a short error
// that names the mistake and the fix, not the whole help.
func TestErrorsNameTheFix(t *testing.T) {
	m := startMain(t, t.TempDir())
	defer m.Close()
	base := "http://" + m.Addr
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		want    []string // in stderr
		notWant string   // not in stderr
	}{
		{"command typo", []string{"serv"}, 2, []string{`unknown command "serv"; did you mean serve?`, "stowage help"}, "Usage:"},
		{"command far", []string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`}, "did you mean"},
		{"flag typo", []string{"gc", "--registry", base, "--dryrun"}, 2, []string{"-dryrun; did you mean --dry-run?", "Run 'stowage gc --help' for its flags."}, "Usage:"},
		{"serve flag", []string{"serve", "--adr", "127.0.0.1:0"}, 2, []string{"-adr; did you mean --addr?", "stowage serve --help"}, "Usage:"},
		{"subcommand typo", []string{"keys", "rotat", "--registry", base}, 2, []string{`unknown subcommand "rotat"; did you mean rotate?`}, "Usage:"},
		{"quota subcommand typo", []string{"quota", "shwo", "--registry", base}, 2, []string{`unknown subcommand "shwo"; did you mean show?`}, "Usage:"},
		{"immutability typo", []string{"immutability", "sho", "--registry", base}, 2, []string{`did you mean show?`}, "Usage:"},
		{"registry without scheme", []string{"usage", "--registry", strings.TrimPrefix(base, "http://")}, 2,
			[]string{"want a URL with http:// or https://", "--registry https://" + m.Addr, "http://" + m.Addr}, "Usage:"},
		{"registry without host", []string{"usage", "--registry", "https://"}, 2, []string{`--registry "https://" has no host: want e.g. --registry https://registry.example.com:5000`}, "e.g. --registry https:// "},
		{"registry with a path", []string{"usage", "--registry", base + "/v2/"}, 2, []string{"drop the path", "--registry " + base}, "no API endpoint"},
		{"delete-repo without argument", []string{"delete-repo", "--registry", base}, 2, []string{"want one REPOSITORY"}, "image"},
		{"https to http", []string{"usage", "--registry", "https://" + m.Addr}, 1, []string{"speaks http, not https: use --registry http://" + m.Addr}, ""},
		// A quota of 0 is refused, and the message's command does remove one.
		{"quota set 0", []string{"quota", "set", "team/app", "0", "--registry", base}, 1, []string{"stowage quota remove team/app"}, ""},
		// A word where a flag was meant must not run a real collection.
		{"gc argument", []string{"gc", "dry-run", "--registry", base}, 2, []string{`unexpected argument "dry-run"; did you mean --dry-run?`}, "Usage:"},
		{"scrub argument", []string{"scrub", "now", "--registry", base}, 2, []string{`unexpected argument "now"`}, "Usage:"},
		{"size without 0", []string{"quota", "set", "team/app", "10XB", "--registry", base}, 1, []string{"is not a size"}, "0 for no limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := cli(t, tc.args...)
			ok := code == tc.code && (tc.notWant == "" || !strings.Contains(errOut, tc.notWant))
			for _, w := range tc.want {
				ok = ok && strings.Contains(errOut, w)
			}
			if !ok {
				t.Errorf("%v: exit %d, stderr:\n%s\nwant exit %d with %q, without %q", tc.args, code, errOut, tc.code, tc.want, tc.notWant)
			}
		})
	}
	if _, errOut, code := cli(t, "quota", "set", "team/app", "1MiB", "--registry", base); code != 0 {
		t.Fatalf("quota set: %s", errOut)
	}
	if out, errOut, code := cli(t, "quota", "remove", "team/app", "--registry", base); code != 0 || strings.Contains(out, "team/app") {
		t.Errorf("quota remove, as the quota set 0 message says: %d\n%s%s", code, out, errOut)
	}
}

// TestAdminTLS: against a registry whose certificate a private CA signed,
// the admin CLI says to pass --ca-cert; with it, or with --insecure, it
// works.
func TestAdminTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestCA(t, dir)
	cfg := config.Default()
	cfg.Addr, cfg.DataDir = "127.0.0.1:0", filepath.Join(dir, "data")
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, testWriter{t})
	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := "https://" + m.Addr
	otherCA, _, _ := writeTestCA(t, t.TempDir())
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string // in stderr (code != 0) or stdout
	}{
		{"unknown CA", nil, nil, 1, "signed by an unknown authority: pass that CA's certificate with --ca-cert FILE"},
		{"ca-cert", []string{"--ca-cert", caFile}, nil, 0, "dedup ratio"},
		{"insecure", []string{"--insecure"}, nil, 0, "dedup ratio"},
		{"ca-cert missing", []string{"--ca-cert", keyFile + ".nope"}, nil, 1, "--ca-cert " + keyFile + ".nope: open"},
		// A key is not a certificate: say so, not "(<nil>)".
		{"ca-cert is a key", []string{"--ca-cert", keyFile}, nil, 1, "--ca-cert " + keyFile + " holds no certificate, only a PEM EC PRIVATE KEY (a key, not the CA's certificate)"},
		{"ca-cert from env is a key", nil, map[string]string{"STOWAGE_CA_CERT": keyFile}, 1, "STOWAGE_CA_CERT " + keyFile + " holds no certificate"},
		// Another CA than the one that signed: not the hint for a missing one.
		{"wrong CA", []string{"--ca-cert", otherCA}, nil, 1, "has a certificate that the CA in --ca-cert (" + otherCA + ") did not sign"},
		// Plain HTTP to the TLS port: Go's server answers a raw 400.
		{"http to https", []string{"--registry", "http://" + m.Addr}, nil, 1, "speaks https, not http: use --registry https://" + m.Addr},
		{"http to https from env", nil, map[string]string{"STOWAGE_REGISTRY": "http://" + m.Addr}, 1, "speaks https, not http: set STOWAGE_REGISTRY=https://" + m.Addr},
		{"no scheme from env", nil, map[string]string{"STOWAGE_REGISTRY": m.Addr}, 2, "STOWAGE_REGISTRY=\"" + m.Addr + "\": want a URL with http:// or https://, e.g. STOWAGE_REGISTRY=https://" + m.Addr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := []string{"usage"}
			if tc.env["STOWAGE_REGISTRY"] == "" {
				args = append(args, "--registry", base)
			}
			out, errOut, code := cli(t, append(args, tc.args...)...)
			got := out
			if tc.code != 0 {
				got = errOut
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Errorf("exit %d\nstdout: %s\nstderr: %s\nwant exit %d with %q", code, out, errOut, tc.code, tc.want)
			}
		})
	}
}

// writeTestCA writes a CA certificate and a server certificate for
// 127.0.0.1 signed by it; it returns the CA file, the certificate and key.
func writeTestCA(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// TestStartFailures: a start that fails says why and how to fix it, and a
// start that fails because the port is taken leaves nothing behind.
func TestStartFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	root := t.TempDir()
	fresh := filepath.Join(root, "fresh")
	_, errOut, code := cli(t, "serve", "--addr", busy.Addr().String(), "--data-dir", fresh)
	if code != 1 || !strings.Contains(errOut, "listen on "+busy.Addr().String()) || !strings.Contains(errOut, "use --addr") {
		t.Errorf("port in use: exit %d, stderr %s", code, errOut)
	}
	if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
		t.Errorf("a start that could not listen left %v behind (err %v); want nothing", entries, err)
	}

	// A data directory another user owns (stowage runs as uid 4242 here).
	owned := t.TempDir()
	fi, _ := os.Stat(owned)
	owner, ownerLabel := userName(int(fi.Sys().(*syscall.Stat_t).Uid))
	currentUID = func() int { return 4242 }
	defer func() { currentUID = os.Geteuid }()
	_, errOut, code = cli(t, "serve", "--addr", "127.0.0.1:0", "--data-dir", owned)
	for _, want := range []string{"directory " + owned + " belongs to user " + ownerLabel + ", but stowage runs as uid 4242",
		"run stowage as " + owner, "sudo chown -R 4242 " + owned} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("data directory of another user: exit %d, stderr %s\nwant %q", code, errOut, want)
		}
	}
}
