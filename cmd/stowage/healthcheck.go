package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

const healthcheckUsage = `Usage: stowage healthcheck [--url URL] [--timeout 5s]

Asks a running registry whether it is serving: GET /healthz must answer
200 within the timeout. Exits 0 when it does, 1 otherwise (with the reason on
stderr). Made for container health checks (the image's HEALTHCHECK runs it),
so it needs no shell, curl or wget.

Without --url it checks the registry this environment configures: the port
of STOWAGE_ADDR (default 127.0.0.1:5000) on 127.0.0.1 when the address is
0.0.0.0, [::] or has no host, and https when STOWAGE_TLS_CERT_FILE is set
(then the certificate is not verified: it names the public host, not
127.0.0.1).

Flags:
`

func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, healthcheckUsage); fl.PrintDefaults() }
	url := fl.String("url", "", "URL to GET (default: /healthz of the local registry, see above)")
	timeout := fl.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	insecure := fl.Bool("insecure", false, "do not verify the TLS certificate of an https --url")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "stowage healthcheck: unexpected argument %q (use --url)\n", fl.Arg(0))
		return 2
	}
	target, skipVerify := *url, *insecure
	if target == "" {
		var err error
		if target, skipVerify, err = localHealthURL(os.Getenv); err != nil {
			fmt.Fprintln(stderr, "stowage healthcheck:", err)
			return 2
		}
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
	if skipVerify {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "stowage healthcheck: unhealthy: %v\n", err)
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

// localHealthURL is the /healthz URL of the registry that STOWAGE_ADDR and
// STOWAGE_TLS_CERT_FILE configure, reached over loopback; skipVerify is true
// for https (the certificate names the public host).
func localHealthURL(getenv func(string) string) (url string, skipVerify bool, err error) {
	addr := getenv("STOWAGE_ADDR")
	if addr == "" {
		addr = "127.0.0.1:5000"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, fmt.Errorf("STOWAGE_ADDR=%q: %v (want host:port; or pass --url)", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	if getenv("STOWAGE_TLS_CERT_FILE") != "" {
		scheme, skipVerify = "https", true
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/healthz", skipVerify, nil
}
