package replication

import (
	"errors"
	"fmt"
	"testing"
)

// TestRefusedForGood: only a refusal of the change itself is passed over;
// permission and authentication refusals, 404, throttling, 5xx and
// connection errors are retried.
func TestRefusedForGood(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"blob unknown", &PeerError{Status: 400, Body: `{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN"}]}`}, true},
		{"quota", &PeerError{Status: 403, Body: `{"errors":[{"code":"DENIED","message":"push refused","detail":{"limitBytes":5,"usedBytes":0,"neededBytes":35}}]}`}, true},
		{"too large", &PeerError{Status: 413}, true},
		{"wrapped", fmt.Errorf("event 3: %w", &PeerError{Status: 400}), true},
		{"permission", &PeerError{Status: 403, Body: `{"errors":[{"code":"DENIED","message":"repl may not do this"}]}`}, false},
		{"authentication", &PeerError{Status: 401}, false},
		{"not found", &PeerError{Status: 404}, false},
		{"throttled", &PeerError{Status: 429}, false},
		{"server", &PeerError{Status: 503}, false},
		{"connection", errors.New("dial tcp: connection refused"), false},
	} {
		if got := refusedForGood(c.err); got != c.want {
			t.Errorf("%s: refusedForGood = %v, want %v", c.name, got, c.want)
		}
	}
}
