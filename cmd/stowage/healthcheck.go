package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/stowage/stowage/config"
)

const healthcheckUsage = `Usage: stowage healthcheck [--url URL] [--config FILE] [--ca-cert FILE] [--insecure] [--timeout 5s]

Asks a running registry whether it is serving: GET /healthz must answer
200 within the timeout. Exits 0 when it does, 1 otherwise (with the reason on
stderr). Made for container health checks (the image's HEALTHCHECK runs it),
so it needs no shell, curl or wget.

Without --url it checks the registry this host configures, read as the
server reads it: the configuration file (--config, else $STOWAGE_CONFIG,
else the --config of the 'stowage serve' running as PID 1 in a container),
then the STOWAGE_* variables (and the --addr of that PID 1). It asks over
loopback (127.0.0.1 when the address is 0.0.0.0, [::] or has no host), with
https when the server serves TLS (tls.cert_file): it then trusts the
server's own certificate (the file it serves), or one signed by a CA the
system or --ca-cert trusts; the name in it need not be 127.0.0.1.

Flags:
`

func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, healthcheckUsage); fl.PrintDefaults() }
	url := fl.String("url", "", "URL to GET (default: /healthz of the local registry, see above)")
	cfgPath := fl.String("config", "", "the server's configuration file (default $STOWAGE_CONFIG, see above)")
	caCert := fl.String("ca-cert", os.Getenv("STOWAGE_CA_CERT"), "PEM file of the CA that signed the registry's certificate, added to the system's (env STOWAGE_CA_CERT)")
	timeout := fl.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	insecure := fl.Bool("insecure", false, "do not verify the registry's TLS certificate")
	if err := parseFlags(fl, args, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if tooManyArgs(fl, "healthcheck", fl.Args(), stderr) {
		return 2
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if *caCert != "" {
		b, err := os.ReadFile(*caCert)
		if err != nil || !roots.AppendCertsFromPEM(b) {
			fmt.Fprintf(stderr, "stowage healthcheck: --ca-cert %s: want a PEM file of CA certificates (%v)\n", *caCert, err)
			return 2
		}
	}
	tlsConfig := &tls.Config{RootCAs: roots}
	target := *url
	if target == "" {
		var certFile string
		if target, certFile, err = localHealthTarget(*cfgPath, os.Getenv, pid1Args()); err != nil {
			fmt.Fprintln(stderr, "stowage healthcheck:", err)
			return 2
		}
		if certFile != "" {
			// The certificate names the public host, not 127.0.0.1: the
			// check is the server's own certificate, or a chain to a
			// trusted CA (whatever the name).
			tlsConfig = &tls.Config{InsecureSkipVerify: true, VerifyConnection: trustOwnCert(certFile, roots)}
		}
	}
	if *insecure {
		tlsConfig = &tls.Config{InsecureSkipVerify: true}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintf(stderr, "stowage healthcheck: %v (want a URL such as http://127.0.0.1:5000/healthz)\n", err)
		return 2
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a health check talks to this host, never through a proxy
	tr.TLSClientConfig = tlsConfig
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		msg := err.Error()
		var ua x509.UnknownAuthorityError
		var he x509.HostnameError
		switch {
		case errors.As(err, &he):
			msg += " (the certificate is for other names: leave out --url to check the local server, whose own certificate is trusted, or pass --insecure)"
		case errors.As(err, &ua) || strings.Contains(msg, "certificate"):
			msg += " (pass --ca-cert FILE with the CA that signed it, or --insecure)"
		}
		fmt.Fprintf(stderr, "stowage healthcheck: unhealthy: %s\n", msg)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "stowage healthcheck: unhealthy: GET %s answered %s: %s\n", target, resp.Status, body)
		return 1
	}
	fmt.Fprintf(stdout, "healthy: GET %s answered %s\n", target, resp.Status)
	return 0
}

// localHealthTarget is the /healthz URL of the registry configured as the
// server reads its configuration: the file (cfgPath, else $STOWAGE_CONFIG,
// else the --config of serveArgs, the arguments of a `stowage serve`
// running as PID 1), then the environment, then serveArgs' --addr. It is
// reached over loopback; certFile is the certificate the server serves
// ("" without TLS).
func localHealthTarget(cfgPath string, getenv func(string) string, serveArgs []string) (url, certFile string, err error) {
	flagOf := func(name string) string {
		for i, a := range serveArgs {
			for _, p := range []string{"-" + name, "--" + name} {
				if a == p && i+1 < len(serveArgs) {
					return serveArgs[i+1]
				}
				if v, ok := strings.CutPrefix(a, p+"="); ok {
					return v
				}
			}
		}
		return ""
	}
	if cfgPath == "" {
		cfgPath = getenv("STOWAGE_CONFIG")
	}
	if cfgPath == "" {
		cfgPath = flagOf("config")
	}
	cfg := config.Default()
	if cfgPath != "" {
		if err := cfg.Load(cfgPath); err != nil {
			return "", "", fmt.Errorf("%v (or pass --url)", err)
		}
	}
	if err := cfg.ApplyEnv(getenv); err != nil {
		return "", "", fmt.Errorf("%v (or pass --url)", err)
	}
	if a := flagOf("addr"); a != "" {
		cfg.Addr = a
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return "", "", fmt.Errorf("listen address %q: %v (want host:port; or pass --url)", cfg.Addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.TLS.CertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/healthz", cfg.TLS.CertFile, nil
}

// pid1Args returns the arguments after "serve" of a `stowage serve` that
// runs as PID 1 (a container whose entry point is the registry), else nil.
func pid1Args() []string {
	b, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		return nil
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) < 2 || !strings.HasSuffix(args[0], "stowage") || args[1] != "serve" {
		return nil
	}
	return args[2:]
}

// trustOwnCert accepts the certificate in certFile (the one the server
// serves, read now: a renewed file is picked up), or a chain to roots
// whatever name it holds.
func trustOwnCert(certFile string, roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the server sent no certificate")
		}
		leaf := cs.PeerCertificates[0]
		b, err := os.ReadFile(certFile)
		if err == nil {
			if blk, _ := pem.Decode(b); blk != nil && bytes.Equal(blk.Bytes, leaf.Raw) {
				return nil
			}
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); verr != nil {
			return fmt.Errorf("the server's certificate is neither the one in %s (tls.cert_file) nor signed by a trusted CA: %w", certFile, verr)
		}
		return nil
	}
}
