package stowage_test

import (
	"testing"
	"time"
)

// The report says how long the collection took (it was empty once: the
// deferred assignment went to a copy).
func TestGCReportDuration(t *testing.T) {
	e := newQuotaEnv(t, 0)
	b, _ := randomBytes(100)
	if err := e.put("r", b); err != nil {
		t.Fatal(err)
	}
	zero := time.Duration(0)
	for _, dry := range []bool{true, false} {
		rep, err := collect(e.ctx, e.reg, gcOptions{MinAge: &zero, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := time.ParseDuration(rep.Duration); err != nil {
			t.Errorf("dry run %v: duration %q: %v", dry, rep.Duration, err)
		}
	}
}
