package auth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/meta/postgres"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/meta/sqlite"
)

// TestConcurrentFirstStartsShareOneKey starts authorities on one empty
// database at once, each through its own connection (nodes starting
// together): they must store one signing key between them, so that a token
// any of them issues verifies on all (a key stored last-write-wins would
// leave the first writers signing with a key nobody else has).
func TestConcurrentFirstStartsShareOneKey(t *testing.T) {
	ctx := context.Background()
	const nodes = 4
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			for round := 0; round < 5; round++ {
				var dbs []stowage.DB
				switch backend {
				case "sqlite":
					path := filepath.Join(t.TempDir(), "stowage.db")
					for range nodes {
						db, err := sqlite.Open(ctx, path)
						if err != nil {
							t.Fatal(err)
						}
						dbs = append(dbs, db)
					}
				case "postgres":
					cs := pgtest.Schema(t, fmt.Sprintf("stowage_auth_key%d", round))
					for range nodes {
						db, err := postgres.Open(ctx, cs, postgres.Options{MaxConns: 2})
						if err != nil {
							t.Fatal(err)
						}
						dbs = append(dbs, db)
					}
				}
				as := make([]*auth.Authority, nodes)
				errs := make([]error, nodes)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range dbs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						as[i], errs[i] = auth.New(ctx, dbs[i], auth.Options{BcryptCost: bcrypt.MinCost, Service: "reg",
							RefreshInterval: time.Nanosecond})
					}()
				}
				close(start)
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("node %d: %v", i, err)
					}
				}
				if _, err := as[0].EnsureAdmin(ctx, "admin", adminPass); err != nil {
					t.Fatal(err)
				}
				for i, issuer := range as {
					tok := issueToken(t, issuer)
					for j, verifier := range as {
						if err := verifyToken(verifier, tok); err != nil {
							t.Fatalf("round %d: a token of node %d fails on node %d: %v", round, i, j, err)
						}
					}
				}
				for _, db := range dbs {
					db.(interface{ Close() error }).Close()
				}
			}
		})
	}
}

func issueToken(t *testing.T, a *auth.Authority) string {
	t.Helper()
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", auth.TokenPath+"?service=reg&scope=repository:a/b:pull", nil)
	r.Header.Set("Authorization", basic("admin", adminPass))
	a.TokenHandler().ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("token: %d %s", w.Code, w.Body)
	}
	var tr auth.TokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	return tr.Token
}

func verifyToken(a *auth.Authority, tok string) error {
	r := httptest.NewRequest("GET", "/v2/a/b/manifests/latest", nil)
	r.Header.Set("Authorization", bearer(tok))
	_, err := a.Authenticate(r)
	return err
}
