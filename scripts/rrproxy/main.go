// Command rrproxy is a round-robin reverse proxy for tests: every request
// goes to the next backend, as a load balancer without sticky sessions
// sends them. It listens on a loopback address only and keeps the Host
// header, so the backends' Location headers name the proxy.
//
//	go run ./scripts/rrproxy -listen 127.0.0.1:5000 http://127.0.0.1:5001 http://127.0.0.1:5002
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: rrproxy -listen 127.0.0.1:PORT BACKEND_URL...")
		os.Exit(2)
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Fatalf("rrproxy: -listen %q: want a loopback address such as 127.0.0.1:5000", *listen)
	}
	var targets []*url.URL
	for _, a := range flag.Args() {
		u, err := url.Parse(a)
		if err != nil || u.Host == "" {
			log.Fatalf("rrproxy: backend %q: want a URL such as http://127.0.0.1:5001", a)
		}
		targets = append(targets, u)
	}
	var next atomic.Uint64
	p := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[next.Add(1)%uint64(len(targets))])
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("rrproxy: %v", err)
	}
	fmt.Printf("rrproxy: listening on %s over %d backends\n", ln.Addr(), len(targets))
	log.Fatal(http.Serve(ln, p))
}
