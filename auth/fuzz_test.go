package auth_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
)

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"", "Basic YWRtaW46c2VjcmV0", "basic YWRtaW46c2VjcmV0", "Basic YWRtaW46", "Basic OnNlY3JldA==", "Basic YWRtaW4",
		"Basic YWRtaW46c2VjcmV0\x00", "Basic !!!", "Basic", "Basic  YWRtaW46c2VjcmV0", "Bearer abc.def.ghi", "bearer abc==",
		"Bearer a=b", "Bearer ", "Bearer abc def", "Digest username=x", "Negotiate YII=", "   ", "Basic YTpiOmM=",
		"Basic w7w6cMOkc3M=", "Basic AAE6cGFzcw==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		c, err := auth.ParseAuthorization(h)
		if err != nil {
			if stowage.ErrorCodeOf(err) != stowage.CodeUnauthorized {
				t.Fatalf("ParseAuthorization(%q): error %v, want UNAUTHORIZED", h, err)
			}
			if c != (auth.Credentials{}) {
				t.Fatalf("ParseAuthorization(%q): credentials %+v with an error", h, c)
			}
			return
		}
		switch c.Scheme {
		case "":
			if strings.TrimSpace(h) != "" {
				t.Fatalf("ParseAuthorization(%q): no scheme for a header", h)
			}
		case "basic":
			if c.Username == "" || strings.Contains(c.Username, ":") {
				t.Fatalf("ParseAuthorization(%q): bad username %q", h, c.Username)
			}
			back, err := auth.ParseAuthorization(auth.BasicAuthorization(c.Username, c.Password))
			if err != nil || back != c {
				t.Fatalf("round trip of %+v: %+v, %v", c, back, err)
			}
		case "bearer":
			if c.Token == "" || strings.ContainsAny(c.Token, " \t\r\n") {
				t.Fatalf("ParseAuthorization(%q): bad token %q", h, c.Token)
			}
		default:
			t.Fatalf("ParseAuthorization(%q): scheme %q", h, c.Scheme)
		}
	})
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{
		"repository:team-a/x:pull,push", "registry:catalog:*", "repository:localhost:5000/x:pull", "repository(plugin):a/b:pull",
		"repository:a:*", "repository:a:content/read,metadata_read", "repository:a:", "repository::pull", ":::", "a:b:c:d:e",
		"repository(x:a:pull", "repository:a b:pull", "repository:a:pull,,push", "registry:*:*", "repository:Team/X:pull",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := auth.ParseScope(s)
		if err != nil {
			if stowage.ErrorCodeOf(err) != stowage.CodeInvalidParameter {
				t.Fatalf("ParseScope(%q): %v", s, err)
			}
			return
		}
		if sc.Type == "" || sc.Name == "" || len(sc.Actions) == 0 {
			t.Fatalf("ParseScope(%q) = %+v: empty part", s, sc)
		}
		back, err := auth.ParseScope(sc.String())
		if err != nil || back.Type != sc.Type || back.Class != sc.Class || back.Name != sc.Name || !slices.Equal(back.Actions, sc.Actions) {
			t.Fatalf("ParseScope(%q) = %+v; its String %q parses to %+v, %v", s, sc, sc.String(), back, err)
		}
		// An anonymous caller without anonymous pull is granted nothing, whatever it asks.
		if g := auth.Grant(auth.Identity{}, []auth.Scope{sc}); len(g) != 0 {
			t.Fatalf("Grant(anonymous, %q) = %+v", s, g)
		}
		// Parsing it among others (space separated) finds it again.
		all, errs := auth.ParseScopes([]string{"registry:catalog:* " + s})
		if len(errs) != 0 || len(all) != 2 || all[1].String() != sc.String() {
			t.Fatalf("ParseScopes with %q: %+v %v", s, all, errs)
		}
	})
}
