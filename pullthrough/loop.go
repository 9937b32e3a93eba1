package pullthrough

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/remote"
)

// HopHeader lists, comma separated, the Stowage nodes whose pull-through
// cache a request to an upstream went through. A node that finds its own
// id in a request it would fill is asked by itself (a rule whose upstream
// leads back here, directly or through other caches): it refuses at once
// instead of calling itself until the timeouts end it.
const HopHeader = "Stowage-Pull-Through-Hops"

// loopText starts the refusal of a loop, so that each cache on the way
// passes it on as it is.
const loopText = "a pull-through loop"

// LoopHeader is set on the refusal of a loop (a HEAD's answer has no body
// to say it), so each cache on the way passes the refusal on.
const LoopHeader = "Stowage-Pull-Through-Loop"

// loopError returns the refusal of a loop err carries from upstream up.
func loopError(up string, err error) error {
	var re *remote.Error
	if !errors.As(err, &re) || re.Status != http.StatusForbidden {
		return nil
	}
	if strings.HasPrefix(re.Message, loopText) {
		return &stowage.Error{Code: stowage.CodeDenied, Message: re.Message}
	}
	if re.Header.Get(LoopHeader) != "" {
		return &stowage.Error{Code: stowage.CodeDenied, Message: fmt.Sprintf(
			"%s: the upstream %s answered that the request came back to a cache it went through: the cache rules of these registries point at each other; point them at another registry", loopText, up)}
	}
	return nil
}

// isLoop reports whether err refuses a loop.
func isLoop(err error) bool {
	var se *stowage.Error
	return errors.As(err, &se) && se.Code == stowage.CodeDenied && strings.HasPrefix(se.Message, loopText)
}

// markLoop sets LoopHeader on the answer to a request refused as a loop.
func markLoop(w http.ResponseWriter, err error) {
	if w != nil && isLoop(err) {
		w.Header().Set(LoopHeader, "1")
	}
}

// maxHops bounds a chain of caches (edge → regional → upstream) whatever
// the ids say.
const maxHops = 8

func newNodeID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hop refuses a fill for a request this node's pull-through sent (a loop),
// and returns the context whose upstream requests carry this node's id.
func (s *Service) hop(ctx context.Context, r *http.Request, rule *Record) (context.Context, error) {
	var hops []string
	if r != nil {
		for _, h := range strings.Split(r.Header.Get(HopHeader), ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	if slices.Contains(hops, s.id) || len(hops) >= maxHops {
		// DENIED, not 503: a client (or the cache that asked) must not
		// retry what will loop again.
		return ctx, &stowage.Error{Code: stowage.CodeDenied, Message: fmt.Sprintf(
			"%s: cache rule %s of the registry asked, whose upstream is %s, leads back to it (the request passed through %d pull-through caches): nothing can be filled through it; point the rule at another registry (stowage cache-rule delete %s)",
			loopText, rule.Name, rule.Upstream, len(hops), rule.Name)}
	}
	return remote.WithHeader(ctx, HopHeader, strings.Join(append(hops, s.id), ",")), nil
}

// checkNotSelf refuses an upstream that is this registry: its host:port
// is one this server listens on (Options.Self), by name or by an address
// of this machine the name resolves to.
func (s *Service) checkNotSelf(ctx context.Context, r Rule) error {
	if s.opts.Self == nil {
		return nil
	}
	host, _ := r.upstream()
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = host, "443"
		if r.PlainHTTP {
			port = "80"
		}
	}
	for _, self := range s.opts.Self() {
		sh, sp, err := net.SplitHostPort(self)
		if err != nil || sp != port {
			continue
		}
		if strings.EqualFold(sh, h) || sameMachine(ctx, h, sh) {
			return stowage.Errorf(stowage.CodeInvalidParameter,
				"cache rule %s: upstream %s is this registry (it listens on %s): pulls through the rule would ask this registry again and again; point it at another registry", r.Name, r.Upstream, self)
		}
	}
	return nil
}

// sameMachine reports whether host resolves to an address this server
// listens on: listen ("" or unspecified: every local address).
func sameMachine(ctx context.Context, host, listen string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return false
	}
	lip := net.ParseIP(listen)
	var local []net.IP
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			if n, ok := a.(*net.IPNet); ok {
				local = append(local, n.IP)
			}
		}
	}
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil {
			continue
		}
		if lip != nil && !lip.IsUnspecified() {
			if ip.Equal(lip) || ip.IsLoopback() && lip.IsLoopback() {
				return true
			}
			continue
		}
		if ip.IsLoopback() || ip.IsUnspecified() || slices.ContainsFunc(local, ip.Equal) {
			return true
		}
	}
	return false
}
