package stowage_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stowage/stowage"
)

// TestNewEventCutsClientFacts: the facts an event copies from a client are
// bounded, whatever the client sent (a failed login records the name tried:
// found by the outside review with a 5,000-character name), and stay valid
// UTF-8.
func TestNewEventCutsClientFacts(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{strings.Repeat("u", 5000), "127.0.0.1"},
		{strings.Repeat("é", 3000), strings.Repeat("a", 1000)},
		{"alice", "10.0.0.1"},
	} {
		ctx := stowage.WithActor(context.Background(), stowage.Actor{Name: tc.name, Addr: tc.addr, UserAgent: strings.Repeat("x", 9000)})
		e := stowage.NewEvent(ctx, stowage.EventLoginFailed, "")
		if len(e.Actor) > 256 || len(e.Addr) > 256 || len(e.Detail) > 600 {
			t.Errorf("name of %d bytes: event actor %d bytes, addr %d, detail %d; want at most 256, 256, ~300", len(tc.name), len(e.Actor), len(e.Addr), len(e.Detail))
		}
		if !utf8.ValidString(e.Actor) || !strings.HasPrefix(tc.name, e.Actor) || len(tc.name) <= 256 && e.Actor != tc.name {
			t.Errorf("actor %q is not the start of %q", e.Actor[:min(len(e.Actor), 20)], tc.name[:min(len(tc.name), 20)])
		}
	}
}
