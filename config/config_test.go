package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStorageAndEncryptionConfig(t *testing.T) {
	cases := []struct {
		name, yaml string
		err        string // substring of the validation error; "" = valid
		check      func(t *testing.T, c Config)
	}{
		{"default", ``, "", func(t *testing.T, c Config) {
			if c.Storage.Filesystem == nil || c.Storage.Filesystem.Path != filepath.Join("d", "storage") || c.Encryption.Mode() != "service" {
				t.Errorf("defaults: %+v, encryption %s", c.Storage, c.Encryption.Mode())
			}
		}},
		{"encryption none", "encryption: none\n", "", func(t *testing.T, c Config) {
			if !c.Encryption.None || c.Encryption.Mode() != "none" {
				t.Errorf("encryption: none gave %+v", c.Encryption)
			}
		}},
		{"encryption key file", "encryption:\n  key_file: /k.json\n", "", func(t *testing.T, c Config) {
			if c.Encryption.Mode() != "key_file" {
				t.Errorf("mode %s", c.Encryption.Mode())
			}
		}},
		{"encryption two sources", "encryption:\n  key_file: /k.json\n  key_env: K\n", "at most one", nil},
		{"encryption typo", "encryption: off\n", "want none", nil},
		{"encryption key typo", "encryption:\n  keyfile: /k.json\n", "unknown key \"keyfile\"", nil},
		{"mirror", `
storage:
  mirror:
    write_quorum: 1
    copies:
      - filesystem: {path: /a}
      - name: west
        filesystem: {path: /b}
`, "", func(t *testing.T, c Config) {
			m := c.Storage.Mirror
			if m == nil || len(m.Copies) != 2 || m.Copies[0].Name != "copy1" || m.Copies[1].Name != "west" || *m.Copies[0].Filesystem.Fsync != true {
				t.Errorf("mirror: %+v", m)
			}
		}},
		{"mirror of one", "storage:\n  mirror:\n    copies:\n      - filesystem: {path: /a}\n", "at least 2 copies", nil},
		{"mirror quorum too high", "storage:\n  mirror:\n    write_quorum: 3\n    copies:\n      - memory: {}\n      - memory: {}\n", "write_quorum", nil},
		{"nested path required", "storage:\n  mirror:\n    copies:\n      - filesystem: {}\n      - memory: {}\n", "copies[0].filesystem.path", nil},
		{"shards of mirrors", `
storage:
  shard:
    shards:
      - name: a
        mirror:
          copies:
            - memory: {}
            - memory: {}
      - name: b
        memory: {}
`, "", nil},
		{"shard without name", "storage:\n  shard:\n    shards:\n      - memory: {}\n", "needs a name", nil},
		{"shard names twice", "storage:\n  shard:\n    shards:\n      - {name: a, memory: {}}\n      - {name: a, memory: {}}\n", "used twice", nil},
		{"two kinds", "storage:\n  memory: {}\n  s3: {bucket: b}\n", "exactly one", nil},
		{"s3 without bucket", "storage:\n  s3: {endpoint: http://127.0.0.1:9000}\n", "s3.bucket", nil},
		{"azure without credentials", "storage:\n  azure: {container: c}\n", "connection_string", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(t, tc.yaml, nil)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			if tc.check != nil && err == nil {
				tc.check(t, c)
			}
		})
	}
}

// TestUnknownKeys: a typo is named by its place in the file, with the
// nearest known key; keys under a type with its own decoding (database:)
// are checked too, and inline storage keys are known under a mirror copy.
func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, err string // err "" = valid
	}{
		{"top level", "adr: 127.0.0.1:5000\n", `line 1: unknown key "adr"; did you mean addr?`},
		{"nested", "log:\n  levl: debug\n", `line 2: unknown key "levl" under log; did you mean level?`},
		{"database mapping", "database:\n  sqlte: /x.db\n", `line 2: unknown key "sqlte" under database; did you mean sqlite?`},
		{"in a list", "storage:\n  mirror:\n    copies:\n      - memory: {}\n      - filesytem: {path: /b}\n",
			`line 5: unknown key "filesytem" under storage.mirror.copies[1]; did you mean filesystem?`},
		{"far from any", "zebra: 1\n", `unknown key "zebra" (known here: addr, `},
		{"upper case typo", "GC:\n  grace: 1h\n", `unknown key "GC"; did you mean gc?`},
		{"valid nested", "database:\n  sqlite: /x.db\nstorage:\n  mirror:\n    copies:\n      - {name: a, memory: {}}\n      - {name: b, filesystem: {path: /b}}\n", ""},
		{"database string", "database: postgres://u@h/db\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.DataDir = "d"
			p := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(p, []byte(tc.yaml), 0o600)
			err := c.Load(p)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), p)):
				t.Fatalf("error %v, want one naming the file and containing %q", err, tc.err)
			}
		})
	}
}

func TestClosest(t *testing.T) {
	known := []string{"serve", "show", "set", "min-age", "dry-run", "addr"}
	for _, tc := range []struct{ in, want string }{
		{"srve", "serve"}, {"shwo", "show"}, {"min", "min-age"}, {"dryrun", "dry-run"}, {"adr", "addr"},
		{"frobnicate", ""}, {"x", ""}, {"serve", "serve"},
	} {
		if got := Closest(tc.in, known); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
