package testenv_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stowage/stowage/internal/testenv"
)

// TestSkip runs a test that skips for a missing component in a child
// process, with and without the stage's requirement, and checks that it is
// skipped, or fails, accordingly.
func TestSkip(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		testenv.Skip(t, "widget", "no widget here")
		return
	}
	for _, tc := range []struct {
		env      string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestSkip"},
		{"STOWAGE_REQUIRE_WIDGET=0", false, "--- SKIP: TestSkip"},
		{"STOWAGE_REQUIRE_WIDGET=1", true, "STOWAGE_REQUIRE_WIDGET is set"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkip$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "STOWAGE_REQUIRE_WIDGET=")
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail || !strings.Contains(string(out), tc.want) {
			t.Errorf("%q: failed=%v, want %v; output:\n%s", tc.env, failed, tc.wantFail, out)
		}
	}
}
