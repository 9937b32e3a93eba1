package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/meta/postgres/pgtest"
)

// TestRequestLimitsHoldAcrossNodes (issue 12 #9): two nodes on one
// PostgreSQL database, each allowing 60 reads a minute for the registry: a
// burst of 200 reads sent to both gets 60 answers in all, not 60 per node
// (the rest are 429). Skipped without the test server; the PostgreSQL stage
// (scripts/postgres-test.sh) runs it.
func TestRequestLimitsHoldAcrossNodes(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_limits_nodes")
	reads := 60
	var nodes []*Main
	for i := 0; i < 2; i++ {
		cfg := config.Default()
		cfg.Addr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
		cfg.Database.Postgres = cs
		cfg.Encryption.None = true
		cfg.Storage.Filesystem = &config.Filesystem{Path: filepath.Join(t.TempDir(), "storage")}
		cfg.Limits.Reads.Registry = &reads
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		m := NewMain(cfg, testWriter{t})
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		nodes = append(nodes, m)
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				resp, err := http.Get("http://" + nodes[(g+i)%2].Addr + "/v2/")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// The bucket refills one read a second meanwhile (and what it refills
	// in limits.LeaseTTL may pass).
	most := reads + int(time.Since(start).Seconds()*float64(reads)/60) + 1
	if codes[200] < reads || codes[200] > most || codes[200]+codes[429] != 200 {
		t.Fatalf("200 reads on two nodes with a registry limit of %d a minute: answers %v, want %d to %d × 200 and the rest 429", reads, codes, reads, most)
	}
	t.Logf("answers %v in %v", codes, time.Since(start))
}

// TestFailedLoginLimitsHoldAcrossNodes: the failed logins counted on one
// node hold back the same guesser on the other: wrong passwords for one name
// from one address, sent to two nodes in turn, are refused after 10 in all
// (plus what the limit refills meanwhile, one every 6 s: bcrypt is slow
// under -race), not after 10 per node.
func TestFailedLoginLimitsHoldAcrossNodes(t *testing.T) {
	cs := pgtest.Schema(t, "stowage_logins_nodes")
	t.Setenv("STOWAGE_ADMIN_PASSWORD", "nodes-admin-password")
	var nodes []*Main
	for i := 0; i < 2; i++ {
		cfg := config.Default()
		cfg.Addr, cfg.DataDir, cfg.Auth.Enabled = "127.0.0.1:0", t.TempDir(), true
		cfg.Database.Postgres = cs
		cfg.Encryption.None = true
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		m := NewMain(cfg, testWriter{t})
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		nodes = append(nodes, m)
	}
	login := func(node int, name, password string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+nodes[node].Addr+"/v2/", nil)
		req.SetBasicAuth(name, password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Names no user has, long and not ASCII, are counted too.
	for _, name := range []string{"admin", "ädmin-" + strings.Repeat("x", 300)} {
		start, failed := time.Now(), 0
		for i := 0; ; i++ {
			code := login(i%2, name, "wrong-password")
			if code == http.StatusTooManyRequests {
				break
			}
			if code != http.StatusUnauthorized || i == 100 {
				t.Fatalf("%q: wrong password %d: %d, want 401 and then 429", name, i+1, code)
			}
			failed++
		}
		most := 10 + int(time.Since(start)/(6*time.Second)) + 1
		if failed < 10 || failed > most {
			t.Fatalf("%q: %d wrong passwords on two nodes before a 429, want 10 to %d (the failures on both nodes count)", name, failed, most)
		}
		t.Logf("%.20q: refused after %d failures in %v", name, failed, time.Since(start))
	}
}
