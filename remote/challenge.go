package remote

import (
	"strings"
)

// Challenge is one authentication challenge of a WWW-Authenticate header
// (RFC 9110 §11.6.1): a scheme ("Basic", "Bearer") and its parameters, with
// lower-case names ("realm", "service", "scope", "error").
type Challenge struct {
	Scheme string
	Params map[string]string
}

// ParseChallenges parses a WWW-Authenticate header value into its
// challenges, in order. It is lenient where registries are sloppy (spaces
// around '=', unquoted values, a trailing comma) and never fails: what it
// cannot read it skips. A header may hold several challenges
// (`Basic realm="x", Bearer realm="y",service="z"`): a token after a comma
// that is not followed by '=' starts the next one.
func ParseChallenges(h string) []Challenge {
	var out []Challenge
	p := parser{s: h}
	for {
		p.skip(" \t,")
		if p.done() {
			return out
		}
		scheme := p.token()
		if scheme == "" { // not a token character: drop it and go on
			p.i++
			continue
		}
		c := Challenge{Scheme: scheme, Params: map[string]string{}}
		for {
			p.skip(" \t")
			save := p.i
			name := p.token()
			p.skip(" \t")
			if name == "" || p.done() || p.s[p.i] != '=' {
				// token68 (`Basic dXNlcg==`) or the next challenge's scheme.
				p.i = save
				if name != "" && len(c.Params) == 0 && !p.nextIsScheme() {
					c.Params[""] = p.token68()
				}
				break
			}
			p.i++ // '='
			p.skip(" \t")
			var val string
			if !p.done() && p.s[p.i] == '"' {
				val = p.quoted()
			} else {
				val = p.token()
			}
			c.Params[strings.ToLower(name)] = val
			p.skip(" \t")
			if p.done() || p.s[p.i] != ',' {
				break
			}
			p.i++ // ','
		}
		out = append(out, c)
	}
}

// Bearer returns the first Bearer challenge, if any.
func Bearer(cs []Challenge) (Challenge, bool) {
	for _, c := range cs {
		if strings.EqualFold(c.Scheme, "bearer") {
			return c, true
		}
	}
	return Challenge{}, false
}

type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }

func (p *parser) skip(set string) {
	for p.i < len(p.s) && strings.IndexByte(set, p.s[p.i]) >= 0 {
		p.i++
	}
}

// tchar, RFC 9110 §5.6.2.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *parser) token() string {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// token68 reads a token68 (letters, digits, -._~+/ and trailing '=').
func (p *parser) token68() string {
	start := p.i
	for p.i < len(p.s) && (isTchar(p.s[p.i]) || p.s[p.i] == '/') {
		p.i++
	}
	for p.i < len(p.s) && p.s[p.i] == '=' {
		p.i++
	}
	return p.s[start:p.i]
}

// nextIsScheme reports whether what follows is a scheme followed by a
// parameter (`Bearer realm=…`), i.e. the next challenge.
func (p *parser) nextIsScheme() bool {
	q := parser{s: p.s, i: p.i}
	if q.token() == "" {
		return false
	}
	q.skip(" \t")
	if q.done() {
		return false
	}
	n := q.token()
	q.skip(" \t")
	return n != "" && !q.done() && q.s[q.i] == '='
}

// quoted reads a quoted-string, undoing backslash escapes; an unterminated
// one runs to the end.
func (p *parser) quoted() string {
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\' && p.i < len(p.s):
			b.WriteByte(p.s[p.i])
			p.i++
		case c == '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
