package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certSource serves the TLS certificate from its files and reloads it
// when they change, so a renewed certificate (cert-manager, certbot, a
// rotated secret) is used without a restart. It looks at the files at most
// once per checkEvery; a pair that fails to load (a half-written renewal)
// keeps the last good certificate and is logged once per change.
type certSource struct {
	certFile, keyFile string
	log               *slog.Logger
	checkEvery        time.Duration
	now               func() time.Time

	mu       sync.Mutex
	cert     *tls.Certificate
	stamp    string // the files' sizes and modification times when loaded (or last failed)
	nextLook time.Time
}

func newCertSource(certFile, keyFile string, log *slog.Logger) (*certSource, error) {
	c := &certSource{certFile: certFile, keyFile: keyFile, log: log, checkEvery: 5 * time.Second, now: time.Now}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	c.cert, c.stamp = &cert, c.fileStamp()
	return c, nil
}

func (c *certSource) fileStamp() string {
	s := ""
	for _, f := range []string{c.certFile, c.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += "missing;"
		}
	}
	return s
}

// GetCertificate is tls.Config's hook.
func (c *certSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.After(c.nextLook) {
		c.nextLook = now.Add(c.checkEvery)
		if st := c.fileStamp(); st != c.stamp {
			c.stamp = st
			cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
			if err != nil {
				c.log.Error("the TLS certificate changed but does not load: still serving the previous one", "cert", c.certFile, "key", c.keyFile, "err", err)
			} else {
				c.cert = &cert
				c.log.Info("reloaded the TLS certificate", "cert", c.certFile)
			}
		}
	}
	return c.cert, nil
}
