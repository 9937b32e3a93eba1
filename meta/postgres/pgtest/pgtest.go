// Package pgtest gives tests a private schema on the test PostgreSQL server
// named by STOWAGE_TEST_POSTGRES (scripts/postgres-test.sh starts one), for
// the packages that test against PostgreSQL (meta/postgres, cmd/stowage, e2e).
package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage/internal/testenv"
)

// Env names the variable holding the test server's connection string.
const Env = "STOWAGE_TEST_POSTGRES"

// Server returns the test server's connection string, or skips the test.
func Server(t testing.TB) string {
	t.Helper()
	cs := os.Getenv(Env)
	if cs == "" {
		testenv.Skip(t, "postgres", Env+" is not set: run scripts/postgres-test.sh, or set it to postgres://user:password@host:port/db "+
			"for a database where that user may create schemas")
	}
	return cs
}

// Schema creates an empty schema (its name starts with prefix), dropped when
// the test ends, and returns a connection string whose search_path is that
// schema: every test gets its own tables, functions and migrations in the
// shared database. Without a test server it skips the test.
func Schema(t testing.TB, prefix string) string {
	t.Helper()
	base := Server(t)
	name := fmt.Sprintf("%s_%d_%016x", prefix, os.Getpid(), rand.Uint64())
	admin := func(sql string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Fatalf("connect to the test PostgreSQL: %v", err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	admin("CREATE SCHEMA " + name)
	t.Cleanup(func() { admin("DROP SCHEMA " + name + " CASCADE") })
	return WithParam(t, base, "search_path", name)
}

// WithParam adds a runtime parameter to a connection string (URL or
// key=value pairs).
func WithParam(t testing.TB, cs, key, value string) string {
	t.Helper()
	if strings.HasPrefix(cs, "postgres://") || strings.HasPrefix(cs, "postgresql://") {
		u, err := url.Parse(cs)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return cs + " " + key + "=" + value
}
