package replication_test

import (
	"net/http/httptest"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/replication"
)

// withAuth gives rg access control whose changes keep clocks, and an
// applier that applies identity changes to it.
func withAuth(t *testing.T, rg *region) *auth.Authority {
	t.Helper()
	a, err := auth.New(ctx, rg.db, auth.Options{BcryptCost: 4, Changes: replication.Clocks{Region: rg.name}})
	if err != nil {
		t.Fatal(err)
	}
	rg.app.Identities = a
	return a
}

// shipIdentities applies to dst the identity changes src made after seq,
// as the replicator ships them (the record read when shipped), and returns
// src's newest seq and the results.
func shipIdentities(t *testing.T, src *region, srcAuth *auth.Authority, dst *region, after int64) (int64, []replication.Result) {
	t.Helper()
	var out []replication.Result
	for _, ch := range src.changes(t, after) {
		if ch.Identity == "" {
			continue
		}
		rec, err := srcAuth.ReadIdentity(ctx, ch.Kind, ch.Identity)
		if err != nil {
			t.Fatal(err)
		}
		ch.Record = rec
		res, err := dst.app.Apply(ctx, ch)
		if err != nil {
			t.Fatalf("apply %s %s: %v", ch.Kind, ch.Identity, err)
		}
		out = append(out, res)
	}
	return src.newest(t), out
}

// login authenticates name:password against a, returning the identity or
// the refusal.
func login(a *auth.Authority, name, password string) (auth.Identity, error) {
	r := httptest.NewRequest("GET", "/v2/", nil)
	r.SetBasicAuth(name, password)
	return a.Authenticate(r)
}

// TestIdentityReplication: users, tokens and scope maps made in one region
// work in the other with the same rights; a change (disable) in either
// reaches the other; each region's first admin stays its own; concurrent
// changes of one identity end the same in both (last writer by HLC); a
// change applied twice is applied once.
func TestIdentityReplication(t *testing.T) {
	east, west := newRegion(t, "east", 0), newRegion(t, "west", 0)
	ea, wa := withAuth(t, east), withAuth(t, west)
	if _, err := ea.EnsureAdmin(ctx, "admin", "east-admin-password"); err != nil {
		t.Fatal(err)
	}
	if _, err := wa.EnsureAdmin(ctx, "admin", "west-admin-password"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ea.PutScopeMap(ctx, "team-a", auth.ScopeMapSpec{Rules: []auth.Rule{{Repository: "team-a/*", Actions: []auth.Action{auth.ContentRead, auth.ContentWrite}}}}); err != nil {
		t.Fatal(err)
	}
	tok, err := ea.CreateToken(ctx, auth.TokenSpec{Name: "ci", ScopeMap: "team-a"})
	if err != nil {
		t.Fatal(err)
	}
	tokPass := tok.Passwords[0].Value
	if _, err := ea.CreateUser(ctx, auth.UserSpec{Name: "bob", Password: "bob-password-123"}); err != nil {
		t.Fatal(err)
	}
	eSeq, _ := shipIdentities(t, east, ea, west, 0)

	// In west: the token with its scope, bob with his password.
	id, err := login(wa, "ci", tokPass)
	if err != nil {
		t.Fatalf("the token made in east does not log in in west: %v", err)
	}
	if !id.Can("team-a/app", auth.ContentWrite) || id.Can("other/app", auth.ContentWrite) {
		t.Errorf("the token's rights in west: push team-a/app %v (want true), other/app %v (want false)",
			id.Can("team-a/app", auth.ContentWrite), id.Can("other/app", auth.ContentWrite))
	}
	if _, err := login(wa, "bob", "bob-password-123"); err != nil {
		t.Errorf("bob made in east does not log in in west: %v", err)
	}
	// Each region's first admin is its own (not overwritten).
	if _, err := login(wa, "admin", "west-admin-password"); err != nil {
		t.Errorf("west's admin no longer logs in with west's password: %v", err)
	}

	// Disabled in west: refused in east.
	disabled := auth.Disabled
	if _, err := wa.UpdateToken(ctx, "ci", auth.TokenChange{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	wSeq, res := shipIdentities(t, west, wa, east, 0)
	if len(res) != 1 || !res[0].Applied {
		t.Fatalf("west shipped %+v, want the token change applied (and nothing of what east made)", res)
	}
	if _, err := login(ea, "ci", tokPass); err == nil {
		t.Error("the token disabled in west still logs in in east")
	}

	// Shipped again (a retry): a no-op.
	if _, res := shipIdentities(t, west, wa, east, 0); len(res) != 1 || res[0].Applied {
		t.Errorf("the same change shipped twice: %+v, want not applied the second time", res)
	}

	// Concurrent: east removes bob's admin... east deletes bob, west makes
	// him an admin, then both ship: the later (west's) wins in both.
	if err := ea.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	yes := true
	if _, err := wa.UpdateUser(ctx, "bob", auth.UserChange{Admin: &yes}); err != nil {
		t.Fatal(err)
	}
	shipIdentities(t, east, ea, west, eSeq)
	shipIdentities(t, west, wa, east, wSeq)
	for _, a := range []*auth.Authority{ea, wa} {
		u, err := a.User(ctx, "bob")
		if err != nil || !u.Admin {
			t.Errorf("after the concurrent delete (east) and promotion (west, later): bob = %+v, %v; want an admin in both", u, err)
		}
	}
	// A later delete removes him in both, and an older change does not
	// bring him back.
	if err := ea.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	shipIdentities(t, east, ea, west, eSeq)
	shipIdentities(t, west, wa, east, 0) // everything west made: older
	for _, a := range []*auth.Authority{ea, wa} {
		if _, err := a.User(ctx, "bob"); stowage.ErrorCodeOf(err) != stowage.CodeNameUnknown {
			t.Errorf("bob after the later delete: %v, want gone in both", err)
		}
	}
}
