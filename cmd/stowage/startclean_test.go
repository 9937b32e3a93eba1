package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/config"
)

// TestHelperServe is the real program, run by TestFailedStartsLeaveNothing
// in a child process (STOWAGE_TEST_ARGS holds its arguments, one a line).
func TestHelperServe(t *testing.T) {
	args := os.Getenv("STOWAGE_TEST_ARGS")
	if args == "" {
		return
	}
	os.Exit(run(context.Background(), strings.Split(args, "\n"), os.Stdout, os.Stderr))
}

// tree lists every path under root, for comparing before and after.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// TestFailedStartsLeaveNothing: the real program, in its own process, fails
// to start for each reason an operator meets; it exits 1 saying what is
// wrong and how to fix it, and leaves no new data directory, database
// file, key or lock behind, while what existed before stays as it was.
func TestFailedStartsLeaveNothing(t *testing.T) {
	free := func() string { // an address where nothing listens
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	closed := free()
	// The child runs as another user in the root-owned LOCK case: the
	// test binary and the directories must be reachable by it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	os.Chmod(binDir, 0o755)
	os.Chmod(filepath.Dir(binDir), 0o755)
	bin := filepath.Join(binDir, "stowage.test")
	if b, err := os.ReadFile(self); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal("copy the test binary:", err)
	}
	asRoot := os.Geteuid() == 0
	const otherUID = 4242

	for _, tc := range []struct {
		name   string
		config string // YAML; {{closed}} is an address where nothing listens
		addr   string
		prep   func(t *testing.T, data string) // makes what exists before the start
		uid    int                             // run the child as this user (when the test runs as root)
		want   []string
	}{
		{name: "port in use", addr: busy.Addr().String(), want: []string{"listen on " + busy.Addr().String(), "use --addr"}},
		{name: "postgres unreachable", config: "database:\n  postgres: postgres://u:p@{{closed}}/db?connect_timeout=5\n",
			want: []string{"connection refused"}},
		{name: "s3 unreachable, no credentials", config: "storage:\n  s3:\n    bucket: b\n    endpoint: http://{{closed}}\n",
			want: []string{"cannot reach the S3 endpoint http://" + closed, "is the address right and the server up?"}},
		{name: "s3 unreachable", config: "storage:\n  s3:\n    bucket: b\n    endpoint: http://{{closed}}\n    access_key_id: a\n    secret_access_key: b\n",
			want: []string{"cannot reach the S3 endpoint http://" + closed}},
		{name: "storage directory refused", config: "storage:\n  filesystem:\n    path: {{root}}/afile/blobs\n",
			prep: func(t *testing.T, data string) { os.WriteFile(filepath.Join(filepath.Dir(data), "afile"), nil, 0o600) },
			want: []string{"storage: directory " + "{{root}}/afile/blobs", "not a directory"}},
		{name: "existing data directory, s3 unreachable", config: "storage:\n  s3:\n    bucket: b\n    endpoint: http://{{closed}}\n",
			prep: func(t *testing.T, data string) {
				os.MkdirAll(filepath.Join(data, "keep"), 0o700)
				os.WriteFile(filepath.Join(data, "keep", "notes"), []byte("mine"), 0o600)
			},
			want: []string{"cannot reach the S3 endpoint"}},
		{name: "LOCK of another user", prep: func(t *testing.T, data string) {
			os.MkdirAll(data, 0o700)
			os.WriteFile(filepath.Join(data, "LOCK"), nil, 0o600)
			if asRoot { // root ran stowage here first; the owner runs it now
				os.Chown(data, otherUID, otherUID)
			} else {
				os.Chmod(filepath.Join(data, "LOCK"), 0)
			}
		}, uid: otherUID, want: lockWants(asRoot, otherUID)},
		{name: "low port without the capability", addr: "127.0.0.1:1023", uid: otherUID,
			want: []string{"permission denied", "CAP_NET_BIND_SERVICE", "PrivateUsers=no"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if strings.HasPrefix(tc.name, "low port") {
				b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
				if start, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && start <= 1023 {
					t.Logf("ports from %d up need no privilege on this host: nothing to refuse", start)
					return
				}
			}
			root := t.TempDir()
			os.Chmod(root, 0o755)
			os.Chmod(filepath.Dir(root), 0o755)
			data := filepath.Join(root, "data")
			if tc.prep != nil {
				tc.prep(t, data)
			}
			before := tree(t, root)
			args := []string{"serve", "--data-dir", data, "--addr", "127.0.0.1:0"}
			if tc.addr != "" {
				args[4] = tc.addr
			}
			if tc.config != "" {
				cf := filepath.Join(t.TempDir(), "c.yaml")
				c := strings.NewReplacer("{{closed}}", closed, "{{root}}", root).Replace(tc.config)
				os.WriteFile(cf, []byte(c), 0o644)
				os.Chmod(filepath.Dir(cf), 0o755)
				args = append(args, "--config", cf)
			}
			cmd := exec.Command(bin, "-test.run=^TestHelperServe$")
			cmd.Env = append(os.Environ(), "STOWAGE_TEST_ARGS="+strings.Join(args, "\n"),
				"AWS_EC2_METADATA_DISABLED=true", "HOME="+root)
			if tc.uid != 0 && asRoot {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(tc.uid), Gid: uint32(tc.uid)}}
			}
			done := make(chan struct{})
			var out []byte
			var runErr error
			go func() { out, runErr = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("the start neither failed nor served within a minute:\n%s", out)
			}
			if cmd.ProcessState == nil {
				t.Fatalf("the child did not run: %v", runErr)
			}
			code := cmd.ProcessState.ExitCode()
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "{{root}}", root)
				if code != 1 || !strings.Contains(string(out), w) {
					t.Errorf("exit %d, output:\n%s\nwant exit 1 and %q", code, out, w)
				}
			}
			if after := tree(t, root); !slices.Equal(after, before) {
				t.Errorf("the failed start changed what is there:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func lockWants(asRoot bool, uid int) []string {
	if asRoot {
		return []string{"LOCK: permission denied", "belongs to user root (uid 0)", fmt.Sprintf("sudo chown -R %d ", uid)}
	}
	return []string{"LOCK (mode 0, yours): permission denied", "chmod u+rw "}
}

// TestUndoKeepsWhatADatabaseRecorded: a start on a database that outlives
// the undo (an existing SQLite file here; PostgreSQL alike) that failed
// after it began recording settings (the encryption key's id, the first
// admin) leaves the data directory as it is: removing the new key file
// would lock the data out. Before that point, and with a new database
// file, the undo removes what the start created.
func TestUndoKeepsWhatADatabaseRecorded(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name      string
		dbExisted bool
		recorded  bool
		wantKey   bool
	}{
		{"new database, recorded", false, true, false},
		{"database outlives, not yet recorded", true, false, false},
		{"database outlives, recorded", true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := config.Default()
			cfg.DataDir = filepath.Join(root, "data")
			cfg.Database.SQLite = filepath.Join(root, "meta.db")
			if tc.dbExisted {
				os.WriteFile(cfg.Database.SQLite, []byte("db"), 0o600)
			}
			fp := snapshotStart(cfg)
			key := ServiceKeyPath(cfg.DataDir)
			os.MkdirAll(filepath.Dir(key), 0o700)
			os.WriteFile(key, []byte("key"), 0o600)
			if tc.recorded {
				fp.recording()
			}
			fp.undo(true, log)
			if _, err := os.Stat(key); (err == nil) != tc.wantKey {
				t.Errorf("key file after the undo: %v; want kept %v", err, tc.wantKey)
			}
			if _, err := os.Stat(cfg.Database.SQLite); (err == nil) != tc.dbExisted {
				t.Errorf("database file after the undo: %v; want it there %v", err, tc.dbExisted)
			}
		})
	}
}
