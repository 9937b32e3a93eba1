package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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

func TestLocalHealthURL(t *testing.T) {
	for _, tc := range []struct {
		env    map[string]string
		url    string
		skip   bool
		errSub string
	}{
		{nil, "http://127.0.0.1:5000/healthz", false, ""},
		{map[string]string{"STOWAGE_ADDR": "0.0.0.0:5000"}, "http://127.0.0.1:5000/healthz", false, ""},
		{map[string]string{"STOWAGE_ADDR": ":8080"}, "http://127.0.0.1:8080/healthz", false, ""},
		{map[string]string{"STOWAGE_ADDR": "[::]:5001"}, "http://127.0.0.1:5001/healthz", false, ""},
		{map[string]string{"STOWAGE_ADDR": "[::1]:5001"}, "http://[::1]:5001/healthz", false, ""},
		{map[string]string{"STOWAGE_ADDR": "10.1.2.3:443", "STOWAGE_TLS_CERT_FILE": "/c.pem"}, "https://10.1.2.3:443/healthz", true, ""},
		{map[string]string{"STOWAGE_ADDR": "localhost"}, "", false, "want host:port"},
	} {
		url, skip, err := localHealthURL(func(k string) string { return tc.env[k] })
		if url != tc.url || skip != tc.skip || (err == nil) != (tc.errSub == "") || err != nil && !strings.Contains(err.Error(), tc.errSub) {
			t.Errorf("localHealthURL(%v) = %q, %v, %v; want %q, %v, error containing %q", tc.env, url, skip, err, tc.url, tc.skip, tc.errSub)
		}
	}
}
