package remote

import (
	"reflect"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Challenge
	}{
		{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`,
			[]Challenge{{"Bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/alpine:pull"}}}},
		{`Basic realm="Registry Realm"`, []Challenge{{"Basic", map[string]string{"realm": "Registry Realm"}}}},
		{`bearer Realm = "r" , Service=s,`, []Challenge{{"bearer", map[string]string{"realm": "r", "service": "s"}}}},
		{`Basic realm="a", Bearer realm="b",service="c"`, []Challenge{
			{"Basic", map[string]string{"realm": "a"}}, {"Bearer", map[string]string{"realm": "b", "service": "c"}}}},
		{`Bearer realm="x\"y",scope="repository:a:pull,push repository:b:pull"`, []Challenge{
			{"Bearer", map[string]string{"realm": `x"y`, "scope": "repository:a:pull,push repository:b:pull"}}}},
		{`Basic`, []Challenge{{"Basic", map[string]string{}}}},
		{`Negotiate abc, Basic`, []Challenge{{"Negotiate", map[string]string{"": "abc"}}, {"Basic", map[string]string{}}}},
		{`Bearer realm="unterminated`, []Challenge{{"Bearer", map[string]string{"realm": "unterminated"}}}},
		{``, nil},
		{`,,, `, nil},
	} {
		got := ParseChallenges(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseChallenges(%q)\n got %#v\nwant %#v", tc.in, got, tc.want)
		}
	}
}

// FuzzParseChallenges: the parser faces whatever a remote registry sends; it
// must end, never panic, and find every challenge it reports by its scheme.
func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`,
		`Basic realm="a", Bearer realm="b",service="c"`, `Basic dXNlcjpwYXNz==`, `Bearer realm="x\"y`, `=,=,"`, "\x00Bearer\trealm=\"\\",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cs := ParseChallenges(s)
		if len(cs) > len(s) {
			t.Fatalf("%d challenges from %d bytes", len(cs), len(s))
		}
		for _, c := range cs {
			if c.Scheme == "" {
				t.Fatalf("challenge without a scheme from %q", s)
			}
			for k, v := range c.Params {
				if len(k)+len(v) > len(s) {
					t.Fatalf("parameter %q=%q longer than the input %q", k, v, s)
				}
			}
		}
		Bearer(cs)
	})
}
