package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/sqlite"
)

// signingSetting reads the signing key's setting from the SQLite database
// of a stopped server.
func signingSetting(t *testing.T, path string) map[string]any {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var raw string
	if err := db.View(context.Background(), func(tx stowage.Tx) (err error) {
		raw, err = tx.Settings().GetSetting(auth.SettingKey)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// dbFilesHold reports which of the database's files (the database, its
// write-ahead log and index) contain any of needles.
func dbFilesHold(t *testing.T, path string, needles ...[]byte) []string {
	t.Helper()
	var found []string
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				found = append(found, filepath.Base(f))
				break
			}
		}
	}
	return found
}

func keyConfig(t *testing.T, dir string) config.Config {
	cfg := config.Default()
	cfg.Addr, cfg.DataDir, cfg.Auth.Enabled, cfg.Auth.Service = "127.0.0.1:0", dir, true, "registry.test"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// bearerStatus is the status of GET /v2/ with a bearer token.
func bearerStatus(t *testing.T, base, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestSigningKeySealedAtRest: with encryption at rest on (the service key,
// the default), the token signing key is not in the metadata database in
// the clear: a new registry stores it sealed, and a key an earlier
// version stored in the clear is sealed at start (and gone from the
// files), while the tokens signed with it stay good.
func TestSigningKeySealedAtRest(t *testing.T) {
	t.Run("new registry", func(t *testing.T) {
		t.Setenv("STOWAGE_ADMIN_PASSWORD", "first-admin-password")
		cfg := keyConfig(t, t.TempDir())
		m := NewMain(cfg, testWriter{t})
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		m.Close()
		v := signingSetting(t, cfg.Database.SQLite)
		if _, clear := v["key"]; clear || v["sealed"] == nil {
			t.Fatalf("the signing key's setting holds %v: want it sealed, without the key", keysOf(v))
		}
	})

	t.Run("clear key of an earlier version", func(t *testing.T) {
		ctx := context.Background()
		cfg := keyConfig(t, t.TempDir())
		// An earlier version: the key in the clear, a token signed with it.
		db, err := sqlite.Open(ctx, cfg.Database.SQLite)
		if err != nil {
			t.Fatal(err)
		}
		old, err := auth.New(ctx, db, auth.Options{Service: cfg.Auth.Service})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.EnsureAdmin(ctx, "admin", "admin-password-1"); err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, auth.TokenPath+"?service=registry.test&scope=repository:a/b:pull", nil)
		r.SetBasicAuth("admin", "admin-password-1")
		old.TokenHandler().ServeHTTP(w, r)
		var tr auth.TokenResponse
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tr) != nil {
			t.Fatalf("token: %d %s", w.Code, w.Body)
		}
		db.Close()
		v := signingSetting(t, cfg.Database.SQLite)
		clear, _ := v["key"].(string)
		key, err := base64.StdEncoding.DecodeString(clear)
		if err != nil || len(key) < 32 {
			t.Fatalf("the earlier version's key: %q %v", clear, err)
		}
		needles := [][]byte{key, []byte(clear)}
		if found := dbFilesHold(t, cfg.Database.SQLite, needles...); len(found) == 0 {
			t.Fatal("test setup: the clear key is not in the database files")
		}

		for start := 1; start <= 2; start++ {
			m := NewMain(cfg, testWriter{t})
			if err := m.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if got := bearerStatus(t, "http://"+m.Addr, tr.Token); got != http.StatusOK {
				t.Errorf("start %d: a token issued before the key was sealed: %d, want 200", start, got)
			}
			if found := dbFilesHold(t, cfg.Database.SQLite, needles...); len(found) > 0 {
				t.Errorf("start %d: the signing key is in the clear in %v", start, found)
			}
			m.Close()
		}
		v = signingSetting(t, cfg.Database.SQLite)
		if _, clear := v["key"]; clear || v["sealed"] == nil || v["kid"] == "" {
			t.Fatalf("the signing key's setting holds %v: want it sealed, without the key", keysOf(v))
		}
	})
}

func keysOf(v map[string]any) string {
	var ks []string
	for k := range v {
		ks = append(ks, k)
	}
	return strings.Join(ks, ",")
}

// TestErrorRoutesLog: the routes that only answer an error (the access
// control API with access control off) write it with the server's logger:
// an error that is not a *stowage.Error is answered 500 and logged, never
// a panic on a nil logger.
func TestErrorRoutesLog(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	mux := http.NewServeMux()
	routes(mux, log, nil, nil, ok, ok, ok, ok)
	cases := []struct {
		name    string
		h       http.Handler
		status  int
		code    string
		logged  string
		message string
	}{
		{"access control off", mux, http.StatusMethodNotAllowed, "UNSUPPORTED", "", "access control is off"},
		{"not a *stowage.Error", errorHandler(log, errors.New("disk on fire")), http.StatusInternalServerError, "INTERNAL_ERROR", "disk on fire", "internal error"},
	}
	for _, tc := range cases {
		logs.Reset()
		w := httptest.NewRecorder()
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("%s: panic: %v", tc.name, p)
				}
			}()
			tc.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, auth.AdminPrefix+"users", nil))
		}()
		var oe struct {
			Errors []struct{ Code, Message string }
		}
		if w.Code != tc.status || json.Unmarshal(w.Body.Bytes(), &oe) != nil || len(oe.Errors) != 1 ||
			oe.Errors[0].Code != tc.code || !strings.Contains(oe.Errors[0].Message, tc.message) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, w.Code, w.Body, tc.status, tc.code)
		}
		if tc.logged != "" && !strings.Contains(logs.String(), tc.logged) {
			t.Errorf("%s: not logged: %q", tc.name, logs.String())
		}
	}
}
