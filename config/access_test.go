package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAccessAndLimitsConfig(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        map[string]string
		err        string // substring of the error; "" = valid
		check      func(t *testing.T, c Config)
	}{
		{"defaults: no auth, no limits", ``, nil, "", func(t *testing.T, c Config) {
			if c.Auth.Enabled || c.StorageLimit() != 0 || c.Tier != "" || c.Auth.Admin != "admin" || c.Auth.AdminPasswordEnv != "STOWAGE_ADMIN_PASSWORD" {
				t.Errorf("defaults: %+v, limit %d", c.Auth, c.StorageLimit())
			}
		}},
		{"tier presets", "tier: standard\n", nil, "", func(t *testing.T, c Config) {
			if c.StorageLimit() != 100<<30 {
				t.Errorf("standard storage = %d", c.StorageLimit())
			}
		}},
		{"override storage", "tier: premium\nlimits:\n  storage: 1.5TiB\n  reads: {identity: 0}\n", nil, "", func(t *testing.T, c Config) {
			if c.StorageLimit() != 3<<39 || c.Limits.Reads.Identity == nil || *c.Limits.Reads.Identity != 0 || c.Limits.Reads.Registry != nil {
				t.Errorf("limits: %d %+v", c.StorageLimit(), c.Limits.Reads)
			}
		}},
		{"env", ``, map[string]string{"STOWAGE_AUTH": "on", "STOWAGE_TIER": "basic", "STOWAGE_STORAGE_LIMIT": "500MB", "STOWAGE_DATABASE": "postgres://u@h/db"}, "", func(t *testing.T, c Config) {
			if !c.Auth.Enabled || c.Tier != "basic" || c.StorageLimit() != 500e6 || c.Database.Kind() != "postgres" {
				t.Errorf("env: %+v %s %d %+v", c.Auth, c.Tier, c.StorageLimit(), c.Database)
			}
		}},
		{"auth block", "auth:\n  enabled: true\n  token_ttl: 10m\n  trusted_proxies: [10.0.0.0/8, 192.168.1.5]\n", nil, "", func(t *testing.T, c Config) {
			if !c.Auth.Enabled || len(c.Auth.TrustedProxies) != 2 {
				t.Errorf("auth: %+v", c.Auth)
			}
		}},
		{"database as a string", "database: postgresql://u:p@db:5432/stowage\n", nil, "", func(t *testing.T, c Config) {
			if c.Database.Postgres == "" || c.Database.Kind() != "postgres" || !c.Database.MigrateOnStart() {
				t.Errorf("database: %+v", c.Database)
			}
		}},
		{"database sqlite path", "database: /var/lib/stowage.db\n", nil, "", func(t *testing.T, c Config) {
			if c.Database.SQLite != "/var/lib/stowage.db" || c.Database.Kind() != "sqlite" {
				t.Errorf("database: %+v", c.Database)
			}
		}},
		{"database mapping", "database:\n  postgres_env: PGURL\n  max_conns: 8\n  migrate: false\n", map[string]string{"PGURL": "postgres://x@y/z"}, "", func(t *testing.T, c Config) {
			if c.Database.Postgres != "postgres://x@y/z" || c.Database.MaxConns != 8 || c.Database.MigrateOnStart() {
				t.Errorf("database: %+v", c.Database)
			}
		}},
		{"database env unset", "database:\n  postgres_env: UNSET_PGURL\n", nil, "UNSET_PGURL is empty", nil},
		{"bad tier", "tier: gold\n", nil, "tier \"gold\"", nil},
		{"bad size", "limits:\n  storage: lots\n", nil, "not a size", nil},
		{"negative rate", "limits:\n  writes: {registry: -1}\n", nil, "limits.writes", nil},
		{"tls half", "tls:\n  cert_file: /c.pem\n", nil, "both cert_file and key_file", nil},
		{"bad proxy", "auth:\n  trusted_proxies: [example.com]\n", nil, "not an address", nil},
		{"bad auth env", ``, map[string]string{"STOWAGE_AUTH": "maybe"}, "STOWAGE_AUTH", nil},
		{"unknown auth key", "auth:\n  enable: true\n", nil, `unknown key "enable" under auth; did you mean enabled?`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(t, tc.yaml, tc.env)
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

func TestParseByteSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false}, {"1024", 1024, false}, {"10GiB", 10 << 30, false}, {"10gib", 10 << 30, false},
		{"500MB", 500e6, false}, {"1.5 TiB", 3 << 39, false}, {"2G", 2 << 30, false}, {"7b", 7, false},
		{"", 0, true}, {"GiB", 0, true}, {"-1GiB", 0, true}, {"1e3", 1000, false}, {"0x10", 0, true},
		{"NaN", 0, true}, {"Inf", 0, true}, {"99999999999PiB", 0, true}, {"ten", 0, true},
	}
	for _, tc := range cases {
		got, err := ParseByteSize(tc.in)
		if (err != nil) != tc.err || !tc.err && got != tc.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	for _, n := range []int64{0, 1, 1023, 1024, 1536, 10 << 30, 3 << 39} {
		back, err := ParseByteSize(FormatByteSize(n))
		if err != nil || back != n {
			t.Errorf("FormatByteSize(%d) = %q, parsed back %d, %v", n, FormatByteSize(n), back, err)
		}
	}
}

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"10GiB", "1.5 TiB", "500MB", "0", "-1", "1e400", "Inf", "0x1p3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseByteSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseByteSize(%q) = %d: negative", s, n)
		}
	})
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "192.168.1.5", "::1", "fe80::/10", "1.2.3.4/33", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err == nil && !p.IsValid() {
			t.Fatalf("ParsePrefix(%q) = invalid prefix without error", s)
		}
	})
}

// loadConfig applies yaml, then env, to the defaults (data_dir "d") and
// validates, as serve does.
func loadConfig(t *testing.T, yaml string, env map[string]string) (Config, error) {
	t.Helper()
	c := Default()
	c.DataDir = "d"
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte(yaml), 0o600)
	err := c.Load(p)
	if err == nil {
		err = c.ApplyEnv(func(k string) string { return env[k] })
	}
	if err == nil {
		err = c.Validate()
	}
	return c, err
}
