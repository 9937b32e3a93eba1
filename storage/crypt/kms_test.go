package crypt_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mem"
)

// TestMain doubles as a KMS plug-in for TestExecKMS: run with
// STOWAGE_TEST_KMS_KEYS set, the test binary serves the plug-in protocol
// over a key file, as a real plug-in would over a key vault.
func TestMain(m *testing.M) {
	if path := os.Getenv("STOWAGE_TEST_KMS_KEYS"); path != "" {
		servePlugin(path)
		return
	}
	os.Exit(m.Run())
}

func servePlugin(path string) {
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req struct {
			Op      string `json:"op"`
			KeyID   string `json:"key_id"`
			Version uint32 `json:"version"`
			Data    []byte `json:"data"`
		}
		resp := map[string]any{}
		fail := func(err error) {
			resp["error"] = err.Error()
			resp["wrong_key"] = errors.Is(err, crypt.ErrWrongKey)
			resp["unavailable"] = !errors.Is(err, crypt.ErrWrongKey)
		}
		k, err := crypt.OpenFileKeyring(path, false)
		switch {
		case json.Unmarshal(in.Bytes(), &req) != nil:
			resp["error"] = "bad request"
		case err != nil:
			fail(fmt.Errorf("%w: %v", crypt.ErrKeyUnavailable, err))
		case req.Op == "current":
			kv, _ := k.Current(ctx)
			resp["key_id"], resp["version"] = kv.ID, kv.Version
		case req.Op == "wrap" || req.Op == "unwrap":
			kv := stowage.KeyVersion{ID: req.KeyID, Version: req.Version}
			var b []byte
			if req.Op == "wrap" {
				b, err = k.Wrap(ctx, kv, req.Data)
			} else {
				b, err = k.Unwrap(ctx, kv, req.Data)
			}
			if err != nil {
				fail(err)
			} else {
				resp["data"] = b
			}
		default:
			resp["error"] = "unknown op " + req.Op
		}
		out.Encode(resp)
	}
}

// TestExecKMS: the KEK lives in a plug-in; disabling the key there makes
// reads fail with "encryption key unavailable", and they work again when it
// is back; a plug-in that dies is started again.
func TestExecKMS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.json")
	if _, err := crypt.OpenFileKeyring(path, true); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STOWAGE_TEST_KMS_KEYS", path)
	kms := &crypt.ExecKMS{Command: []string{os.Args[0]}}
	defer kms.Close()
	m := crypt.NewManager(openDB(t), kms)
	m.CacheTTL = -1
	b := crypt.New(mem.New(), m)
	data := random(100_000)
	if err := b.Put(ctx, "k", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if got, err := read(b, "k", 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the plug-in: %d bytes, %v", len(got), err)
	}
	saved, _ := os.ReadFile(path)
	os.Remove(path) // the key is disabled in the vault
	if _, err := read(b, "k", 0); !errors.Is(err, crypt.ErrKeyUnavailable) || stowage.ErrorCodeOf(err) != stowage.CodeUnavailable {
		t.Errorf("read with the key disabled: %v", err)
	}
	os.WriteFile(path, saved, 0o600)
	kms.Close() // the plug-in went away; the next request starts it again
	if got, err := read(b, "k", 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read with the key back: %d bytes, %v", len(got), err)
	}
	if un, err := m.Check(ctx); err != nil || len(un) > 0 {
		t.Errorf("Check: %v, %v", un, err)
	}
}
