package auth

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// remoteIP is the address of the connection's peer.
func remoteIP(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func (a *Authority) isTrusted(ip netip.Addr) bool {
	for _, p := range a.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// trusted reports whether the request came through a trusted proxy.
func (a *Authority) trusted(r *http.Request) bool {
	ip, ok := remoteIP(r)
	return ok && a.isTrusted(ip)
}

// ClientIP returns the client's address: the connection's peer, or, when
// that is a trusted proxy, the rightmost X-Forwarded-For address that is
// not one (so a client cannot choose its address by sending the header).
func (a *Authority) ClientIP(r *http.Request) string {
	ip, ok := remoteIP(r)
	if !ok {
		return r.RemoteAddr
	}
	if !a.isTrusted(ip) {
		return ip.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		h = h.Unmap()
		if !a.isTrusted(h) {
			return h.String()
		}
		ip = h
	}
	return ip.String()
}

// from returns the log attributes saying where a request came from.
func (a *Authority) from(r *http.Request) []any {
	attrs := []any{"remote", r.RemoteAddr}
	if a.trusted(r) {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			attrs = append(attrs, "forwarded_for", trunc(xff), "client", a.ClientIP(r))
		}
	}
	return attrs
}

// authFailed logs an authentication failure: who, how, from where, why.
func (a *Authority) authFailed(r *http.Request, name, method, reason string) {
	attrs := []any{"audit", "auth.failure", "name", name, "method", method, "reason", reason,
		"request", r.Method + " " + trunc(r.URL.Path)}
	a.log.WarnContext(r.Context(), "authentication failed", append(attrs, a.from(r)...)...)
}

// audit logs a management operation: who did what to what, from where,
// and whether it worked.
func (a *Authority) audit(r *http.Request, id Identity, op, target string, err error, extra ...any) {
	attrs := []any{"audit", op, "actor", id.String(), "target", target}
	attrs = append(attrs, extra...)
	attrs = append(attrs, a.from(r)...)
	if err != nil {
		a.log.WarnContext(r.Context(), "management operation refused", append(attrs, "outcome", "refused", "err", err.Error())...)
		return
	}
	a.log.InfoContext(r.Context(), "management operation", append(attrs, "outcome", "ok")...)
}
