package stowage

import (
	"strings"
	"testing"
)

// TestLimitErrorNamesAction: a refusal names what was refused (a push, a
// restore), not always a push.
func TestLimitErrorNamesAction(t *testing.T) {
	for _, c := range []struct{ action, want string }{
		{"push", "push refused: it needs 1 KiB more, and the quota of repository app is 2 KiB with 1.5 KiB used (512 B free); "},
		{"restore of app@sha256:ab", "restore of app@sha256:ab refused: it needs 1 KiB more, and the quota of repository app is 2 KiB"},
	} {
		err := limitError(c.action, "the quota of repository app", 2048, 1536, 1024, "raise it")
		se, ok := err.(*Error)
		if !ok || se.Code != CodeDenied || !strings.HasPrefix(se.Message, c.want) {
			t.Errorf("limitError(%q): %v; want DENIED starting %q", c.action, err, c.want)
		}
	}
}
