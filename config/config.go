// Package config holds Stowage's typed configuration: defaults, a YAML file,
// environment overrides and flags (in that order of precedence, last wins),
// and a Validate that explains what is wrong in words a person understands.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stowage/stowage"
)

// Config is the whole configuration of `stowage serve`.
type Config struct {
	// Addr is the listen address, host:port.
	Addr string `yaml:"addr"`
	// DataDir holds everything by default: storage/ (blobs) and stowage.db.
	DataDir string `yaml:"data_dir"`
	// Storage selects and configures the blob backend.
	Storage Storage `yaml:"storage"`
	// Database is the metadata database.
	Database Database `yaml:"database"`
	Log      Log      `yaml:"log"`
	// GC configures online garbage collection.
	GC GC `yaml:"gc"`
	// Delete configures what a manifest delete takes with it.
	Delete Delete `yaml:"delete"`
	// Scrub configures the background scrub.
	Scrub Scrub `yaml:"scrub"`
	// Retention configures how often the retention policy (set with
	// `stowage retention set`, kept in the database) is applied.
	Retention Retention `yaml:"retention"`
	// Encryption configures encryption at rest (on by default).
	Encryption Encryption `yaml:"encryption"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM/SIGINT.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Auth configures access control (docs/access.md).
	Auth Auth `yaml:"auth"`
	// TLS makes the registry serve HTTPS itself.
	TLS TLS `yaml:"tls"`
	// Tier selects preset storage and request limits: basic, standard or
	// premium (docs/limits.md). Empty: no limits.
	Tier string `yaml:"tier"`
	// Limits override the tier's numbers one by one.
	Limits Limits `yaml:"limits"`
	// Events configures the change feed: retention, pull events.
	Events Events `yaml:"events"`
	// Replication joins regions into one registry (replication.go).
	Replication Replication `yaml:"replication"`
	// InsecureOpen lets a registry on a non-loopback address run without
	// authentication (flag --insecure-open-registry; never from YAML).
	InsecureOpen bool `yaml:"-"`
}

// Auth configures access control. Off, every caller may do everything
// (allowed on a loopback address only, unless InsecureOpen).
type Auth struct {
	// Enabled turns access control on (env STOWAGE_AUTH=on).
	Enabled bool `yaml:"enabled"`
	// Admin names the first admin user, created at the first start with
	// auth on when no user exists (default "admin").
	Admin string `yaml:"admin"`
	// AdminPasswordEnv names the environment variable holding the first
	// admin's password (default STOWAGE_ADMIN_PASSWORD). Unset: a random
	// password is written to <data_dir>/initial-admin-password.
	AdminPasswordEnv string `yaml:"admin_password_env"`
	// Realm is the token endpoint's URL in challenges (default: derived from
	// each request, <scheme>://<host>/oauth2/token).
	Realm string `yaml:"realm"`
	// Service names the registry in challenges and tokens (default: the
	// request's host).
	Service string `yaml:"service"`
	// TokenTTL is the lifetime of access tokens (default 5m).
	TokenTTL Duration `yaml:"token_ttl"`
	// RefreshTTL is the lifetime of refresh tokens (default 720h).
	RefreshTTL Duration `yaml:"refresh_ttl"`
	// TrustedProxies are the addresses (CIDR or single IP) of TLS-terminating
	// proxies whose X-Forwarded-For and X-Forwarded-Proto are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TLS is a certificate and its key, PEM files.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Limits override a tier's numbers. Unset fields keep the tier's value; 0
// means no limit.
type Limits struct {
	// Storage is the most bytes the registry may hold (each layer once),
	// e.g. 100GiB.
	Storage *ByteSize `yaml:"storage"`
	// Requests per minute, for the whole registry and for each identity.
	Reads   RateLimit `yaml:"reads"`
	Writes  RateLimit `yaml:"writes"`
	Deletes RateLimit `yaml:"deletes"`
	Tokens  RateLimit `yaml:"tokens"`
}

// RateLimit is requests per minute for the registry and for each identity.
type RateLimit struct {
	Registry *int `yaml:"registry"`
	Identity *int `yaml:"identity"`
}

// TierStorage is the storage included in each tier (as ACR's: 10, 100 and
// 500 GiB).
var TierStorage = map[string]int64{"basic": 10 << 30, "standard": 100 << 30, "premium": 500 << 30}

// StorageLimit is the registry's storage limit in bytes: limits.storage if
// set, else the tier's; 0: none.
func (c Config) StorageLimit() int64 {
	if c.Limits.Storage != nil {
		return int64(*c.Limits.Storage)
	}
	return TierStorage[c.Tier]
}

// ByteSize is a number of bytes written as 10GiB, 500MB, 1.5TiB or 1024.
type ByteSize int64

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

func (b ByteSize) MarshalYAML() (any, error) { return FormatByteSize(int64(b)), nil }

var byteUnits = []struct {
	suffix string
	mult   float64
}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"pib", 1 << 50},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"pb", 1e15}, {"k", 1 << 10}, {"m", 1 << 20},
	{"g", 1 << 30}, {"t", 1 << 40}, {"b", 1}}

// ParseByteSize reads a size: a number with an optional unit (B, KB, MB,
// GB, TB, PB in powers of 1000; KiB, MiB, GiB, TiB, PiB, K, M, G, T in
// powers of 1024; case does not matter).
func ParseByteSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || strings.ContainsAny(t, "xXpP_") || v < 0 || v != v {
		return 0, fmt.Errorf("%q is not a size (examples: 500MB, 10GiB, 1.5TiB)", s)
	}
	if v*mult >= 1<<63 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v * mult), nil
}

// FormatByteSize writes n as stowage.HumanBytes does, without the space
// (10GiB, 1.5MiB, 512B), so ParseByteSize reads it back.
func FormatByteSize(n int64) string { return strings.ReplaceAll(stowage.HumanBytes(n), " ", "") }

// Storage is a typed union: exactly one backend is set. Mirror and Shard
// hold further Storage values, so topologies nest: shards of mirrors,
// mirrors of shards, a disk mirrored to S3 (see docs/storage.md).
type Storage struct {
	Filesystem *Filesystem `yaml:"filesystem"`
	Memory     *struct{}   `yaml:"memory"`
	S3         *S3         `yaml:"s3"`
	Azure      *Azure      `yaml:"azure"`
	Mirror     *Mirror     `yaml:"mirror"`
	Shard      *ShardSet   `yaml:"shard"`
}

// S3 stores blobs in an S3 bucket (AWS or an S3-compatible server).
type S3 struct {
	Endpoint        string `yaml:"endpoint"` // empty: AWS
	Region          string `yaml:"region"`
	Bucket          string `yaml:"bucket"`
	Prefix          string `yaml:"prefix"`
	AccessKeyID     string `yaml:"access_key_id"`     // empty: the AWS environment (AWS_ACCESS_KEY_ID, ...)
	SecretAccessKey string `yaml:"secret_access_key"` // or secret_access_key_env
	SecretKeyEnv    string `yaml:"secret_access_key_env"`
	PathStyle       bool   `yaml:"path_style"` // for S3-compatible servers
}

// Azure stores blobs in an Azure Blob Storage container.
type Azure struct {
	ConnectionString    string `yaml:"connection_string"`
	ConnectionStringEnv string `yaml:"connection_string_env"`
	AccountName         string `yaml:"account_name"`
	AccountKey          string `yaml:"account_key"`
	AccountKeyEnv       string `yaml:"account_key_env"`
	ServiceURL          string `yaml:"service_url"` // empty: https://<account>.blob.core.windows.net
	Container           string `yaml:"container"`
	Prefix              string `yaml:"prefix"`
}

// Mirror keeps every object on each of its copies (geo-redundant storage).
type Mirror struct {
	// WriteQuorum is how many copies a write must reach (default: all).
	WriteQuorum int `yaml:"write_quorum"`
	// Timeout after which a copy that does not answer counts as failed.
	Timeout Duration       `yaml:"timeout"`
	Copies  []NamedStorage `yaml:"copies"`
}

// ShardSet spreads objects over its shards by rendezvous hashing.
type ShardSet struct {
	Shards []NamedStorage `yaml:"shards"`
}

// NamedStorage is a copy of a mirror or a shard: a name and a backend. A
// shard's name decides which objects it holds; do not rename shards.
type NamedStorage struct {
	Name    string `yaml:"name"`
	Storage `yaml:",inline"`
}

// validate checks one storage node; top is true for the root (where a
// filesystem path defaults to <data_dir>/storage).
func (s *Storage) validate(where, dataDir string, top bool) []string {
	var errs []string
	kinds := 0
	for _, set := range []bool{s.Filesystem != nil, s.Memory != nil, s.S3 != nil, s.Azure != nil, s.Mirror != nil, s.Shard != nil} {
		if set {
			kinds++
		}
	}
	if kinds == 0 && top {
		s.Filesystem, kinds = &Filesystem{}, 1
	}
	if kinds != 1 {
		return []string{where + ": set exactly one of filesystem, memory, s3, azure, mirror or shard"}
	}
	switch {
	case s.Filesystem != nil:
		if s.Filesystem.Path == "" {
			if !top {
				errs = append(errs, where+".filesystem.path: set a directory")
			}
			s.Filesystem.Path = filepath.Join(dataDir, "storage")
		}
		if s.Filesystem.Fsync == nil {
			t := true
			s.Filesystem.Fsync = &t
		}
	case s.S3 != nil:
		if s.S3.Bucket == "" {
			errs = append(errs, where+".s3.bucket: set the bucket")
		}
	case s.Azure != nil:
		if s.Azure.Container == "" {
			errs = append(errs, where+".azure.container: set the container")
		}
		if s.Azure.ConnectionString == "" && s.Azure.ConnectionStringEnv == "" && s.Azure.AccountName == "" {
			errs = append(errs, where+".azure: set connection_string(_env), or account_name with account_key(_env)")
		}
	case s.Mirror != nil:
		m := s.Mirror
		if len(m.Copies) < 2 {
			errs = append(errs, where+".mirror: a mirror needs at least 2 copies")
		}
		if m.WriteQuorum < 0 || m.WriteQuorum > len(m.Copies) {
			errs = append(errs, fmt.Sprintf("%s.mirror.write_quorum: %d, want 1 to %d (0: all)", where, m.WriteQuorum, len(m.Copies)))
		}
		errs = append(errs, validateNamed(where+".mirror.copies", dataDir, m.Copies, "copy")...)
	case s.Shard != nil:
		if len(s.Shard.Shards) < 1 {
			errs = append(errs, where+".shard: list at least one shard")
		}
		errs = append(errs, validateNamed(where+".shard.shards", dataDir, s.Shard.Shards, "")...)
	}
	return errs
}

func validateNamed(where, dataDir string, list []NamedStorage, defaultPrefix string) []string {
	var errs []string
	seen := map[string]bool{}
	for i := range list {
		n := &list[i]
		if n.Name == "" && defaultPrefix != "" {
			n.Name = fmt.Sprint(defaultPrefix, i+1)
		}
		if n.Name == "" {
			errs = append(errs, fmt.Sprintf("%s[%d].name: every shard needs a name (it decides which objects the shard holds)", where, i))
		}
		if seen[n.Name] {
			errs = append(errs, fmt.Sprintf("%s[%d].name: %q is used twice", where, i, n.Name))
		}
		seen[n.Name] = true
		errs = append(errs, n.Storage.validate(fmt.Sprintf("%s[%d]", where, i), dataDir, false)...)
	}
	return errs
}

// Filesystem stores blobs in a local directory.
type Filesystem struct {
	// Path defaults to <data_dir>/storage.
	Path string `yaml:"path"`
	// Fsync makes every stored blob durable before it is acknowledged (default true).
	Fsync *bool `yaml:"fsync"`
}

// Database configures the metadata store: the embedded SQLite database
// (the default), or PostgreSQL, which several nodes can share
// (docs/scale-out.md). YAML takes a mapping, or just the connection string
// (`database: postgres://…`) or SQLite path.
type Database struct {
	// SQLite is the path of the embedded database; default <data_dir>/stowage.db.
	SQLite string `yaml:"sqlite"`
	// Postgres is a PostgreSQL connection string (postgres://user:pw@host/db
	// or libpq key=value pairs); set, it replaces SQLite.
	Postgres string `yaml:"postgres"`
	// PostgresEnv names an environment variable holding the connection
	// string (so the password stays out of the file).
	PostgresEnv string `yaml:"postgres_env"`
	// MaxConns bounds this node's PostgreSQL connections (default: the
	// larger of 4 and the number of CPUs).
	MaxConns int `yaml:"max_conns"`
	// Migrate lets serve apply pending PostgreSQL migrations at start
	// (default true); false: run `stowage migrate` first.
	Migrate *bool `yaml:"migrate"`
}

// UnmarshalYAML accepts a mapping, or a connection string or path.
func (d *Database) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*d = Database{}
		if isPostgresURL(n.Value) {
			d.Postgres = n.Value
		} else {
			d.SQLite = n.Value
		}
		return nil
	}
	type plain Database
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*d = Database(p)
	return nil
}

func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Kind is "postgres" or "sqlite".
func (d Database) Kind() string {
	if d.Postgres != "" {
		return "postgres"
	}
	return "sqlite"
}

// MigrateOnStart reports whether serve applies migrations.
func (d Database) MigrateOnStart() bool { return d.Migrate == nil || *d.Migrate }

// GC configures the background collector and the defaults of `stowage gc`.
type GC struct {
	// Interval between background collections; 0 disables them.
	Interval Duration `yaml:"interval"`
	// Grace: an unreferenced blob is kept this long after it lost its last
	// reference (or was pushed).
	Grace Duration `yaml:"grace"`
	// Lease: a blob a client HEADed, pulled, uploaded or mounted is kept this
	// long even if nothing references it (so a push that skipped uploading
	// it can still reference it).
	Lease Duration `yaml:"lease"`
	// UploadExpiry: upload sessions idle this long are abandoned and removed.
	UploadExpiry Duration `yaml:"upload_expiry"`
	// SweepInterval: the background collector makes a full pass (reads
	// every blob row, not only the queue of what changed, and walks storage
	// for objects no database row knows: the part of a collection that
	// costs the registry's size) at most this often; its other runs cost
	// what changed since the last. 0: every run. `stowage gc` always does.
	SweepInterval Duration `yaml:"sweep_interval"`
}

// Scrub configures the background scrub: every stored blob is read back,
// checked against its digest, and repaired from a good copy when a mirror
// has one.
type Scrub struct {
	// Interval between scrubs; 0 disables them (`stowage scrub` still
	// works). Default 168h (weekly).
	Interval Duration `yaml:"interval"`
}

// Retention configures the background retention job.
type Retention struct {
	// Interval between runs; 0 disables the job (the policy can still be
	// applied with `stowage retention run`).
	Interval Duration `yaml:"interval"`
}

// Delete configures deletes.
type Delete struct {
	// KeepReferrers keeps signatures, SBOMs and other referrers when their
	// subject is deleted (default: they are deleted with it).
	KeepReferrers bool `yaml:"keep_referrers"`
}

// Encryption configures encryption at rest. By default every object is
// encrypted with a service-managed key kept in <data_dir>/keys/service.json.
// Set at most one of KeyFile and KeyEnv for a customer-managed key; write
// `encryption: none` to store objects unencrypted (deployments that encrypt
// elsewhere).
type Encryption struct {
	// None turns encryption off (YAML: `encryption: none`).
	None bool `yaml:"-"`
	// KeyFile is a customer-managed key file (JSON, mode 0600), reread when
	// it changes.
	KeyFile string `yaml:"key_file"`
	// KeyEnv names an environment variable holding a customer-managed key:
	// a base64 32-byte key, or a key file's JSON.
	KeyEnv string `yaml:"key_env"`
	// KMSCommand runs an external key-management plug-in (see
	// docs/encryption.md): the program and its arguments.
	KMSCommand []string `yaml:"kms_command"`
	// CacheTTL is how long an unwrapped data key is reused: how long a
	// revoked key may still be honoured. Default 1m.
	CacheTTL Duration `yaml:"cache_ttl"`
}

// UnmarshalYAML accepts `encryption: none` as well as a mapping.
func (e *Encryption) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch n.Value {
		case "none":
			*e = Encryption{None: true}
			return nil
		case "service", "on", "":
			*e = Encryption{}
			return nil
		}
		return fmt.Errorf("line %d: encryption: %q: want none, service, or a mapping with key_file, key_env or kms_command", n.Line, n.Value)
	}
	if n.Kind == yaml.MappingNode {
		// n.Decode does not apply the decoder's KnownFields: check here, so
		// a typo (keyfile:) is an error rather than the service key.
		known := map[string]bool{"key_file": true, "key_env": true, "kms_command": true, "cache_ttl": true}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; !known[k.Value] {
				return fmt.Errorf("line %d: encryption: unknown key %q (known: key_file, key_env, kms_command, cache_ttl)", k.Line, k.Value)
			}
		}
	}
	type plain Encryption
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*e = Encryption(p)
	return nil
}

// Mode names what the configuration selects: none, service, key_file,
// key_env or kms.
func (e Encryption) Mode() string {
	switch {
	case e.None:
		return "none"
	case e.KeyFile != "":
		return "key_file"
	case e.KeyEnv != "":
		return "key_env"
	case len(e.KMSCommand) > 0:
		return "kms"
	}
	return "service"
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (examples: 30s, 5m, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Default returns the configuration `stowage serve` uses with no arguments.
func Default() Config {
	return Config{
		Addr:            "127.0.0.1:5000",
		DataDir:         "./stowage-data",
		Log:             Log{Level: "info", Format: "text"},
		ShutdownTimeout: Duration(30 * time.Second),
		GC: GC{Interval: Duration(time.Hour), Grace: Duration(time.Hour), Lease: Duration(time.Hour),
			UploadExpiry: Duration(24 * time.Hour), SweepInterval: Duration(24 * time.Hour)},
		Retention: Retention{Interval: Duration(time.Hour)},
		Scrub:     Scrub{Interval: Duration(7 * 24 * time.Hour)},
		Events:    defaultEvents,
	}
}

// Load reads a YAML file over c. Unknown keys are errors (a typo must not be
// silently ignored).
func (c *Config) Load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	// Unknown keys first, named by their place in the file and with the
	// nearest known key (a syntax error is left to the decoder).
	var root yaml.Node
	if yaml.Unmarshal(b, &root) == nil {
		if err := unknownKeys(&root, reflect.TypeOf(*c), nil); err != nil {
			return fmt.Errorf("config file %s, %v", path, err)
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config file %s: %v", path, err)
	}
	return nil
}

// ApplyEnv applies STOWAGE_* environment variables over c.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	set := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set("STOWAGE_ADDR", &c.Addr)
	set("STOWAGE_DATA_DIR", &c.DataDir)
	set("STOWAGE_LOG_LEVEL", &c.Log.Level)
	set("STOWAGE_LOG_FORMAT", &c.Log.Format)
	set("STOWAGE_DATABASE_SQLITE", &c.Database.SQLite)
	set("STOWAGE_DATABASE_POSTGRES", &c.Database.Postgres)
	if v := getenv("STOWAGE_DATABASE"); v != "" {
		if isPostgresURL(v) {
			c.Database.Postgres = v
		} else {
			c.Database.SQLite = v
		}
	}
	if c.Database.PostgresEnv != "" && c.Database.Postgres == "" {
		c.Database.Postgres = getenv(c.Database.PostgresEnv)
		if c.Database.Postgres == "" {
			return fmt.Errorf("database.postgres_env: the environment variable %s is empty or unset", c.Database.PostgresEnv)
		}
	}
	set("STOWAGE_TIER", &c.Tier)
	set("STOWAGE_TLS_CERT_FILE", &c.TLS.CertFile)
	set("STOWAGE_TLS_KEY_FILE", &c.TLS.KeyFile)
	if v := getenv("STOWAGE_AUTH"); v != "" {
		switch strings.ToLower(v) {
		case "on", "true", "1", "yes":
			c.Auth.Enabled = true
		case "off", "false", "0", "no":
			c.Auth.Enabled = false
		default:
			return fmt.Errorf("STOWAGE_AUTH=%q: want on or off", v)
		}
	}
	if v := getenv("STOWAGE_STORAGE_LIMIT"); v != "" {
		n, err := ParseByteSize(v)
		if err != nil {
			return fmt.Errorf("STOWAGE_STORAGE_LIMIT: %v", err)
		}
		b := ByteSize(n)
		c.Limits.Storage = &b
	}
	if v := getenv("STOWAGE_STORAGE_PATH"); v != "" {
		c.filesystem().Path = v
	}
	if v := getenv("STOWAGE_STORAGE_FSYNC"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("STOWAGE_STORAGE_FSYNC=%q: want true or false", v)
		}
		c.filesystem().Fsync = &b
	}
	for name, dst := range map[string]*Duration{"STOWAGE_GC_INTERVAL": &c.GC.Interval, "STOWAGE_GC_GRACE": &c.GC.Grace,
		"STOWAGE_GC_LEASE": &c.GC.Lease, "STOWAGE_GC_UPLOAD_EXPIRY": &c.GC.UploadExpiry, "STOWAGE_GC_SWEEP_INTERVAL": &c.GC.SweepInterval} {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s=%q: want a duration such as 30m", name, v)
			}
			*dst = Duration(d)
		}
	}
	switch v := getenv("STOWAGE_ENCRYPTION"); v {
	case "":
	case "none":
		c.Encryption = Encryption{None: true}
	case "service":
		c.Encryption = Encryption{}
	default:
		return fmt.Errorf("STOWAGE_ENCRYPTION=%q: want none or service (customer keys: STOWAGE_ENCRYPTION_KEY_FILE or STOWAGE_ENCRYPTION_KEY_ENV)", v)
	}
	if v := getenv("STOWAGE_ENCRYPTION_KEY_FILE"); v != "" {
		c.Encryption.None, c.Encryption.KeyFile = false, v
	}
	if v := getenv("STOWAGE_ENCRYPTION_KEY_ENV"); v != "" {
		c.Encryption.None, c.Encryption.KeyEnv = false, v
	}
	if v := getenv("STOWAGE_ENCRYPTION_CACHE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("STOWAGE_ENCRYPTION_CACHE_TTL=%q: want a duration such as 1m", v)
		}
		c.Encryption.CacheTTL = Duration(d)
	}
	if v := getenv("STOWAGE_SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("STOWAGE_SHUTDOWN_TIMEOUT=%q: want a duration such as 30s", v)
		}
		c.ShutdownTimeout = Duration(d)
	}
	return c.Events.applyEnv(getenv)
}

func (c *Config) filesystem() *Filesystem {
	if c.Storage.Filesystem == nil {
		c.Storage.Filesystem = &Filesystem{}
	}
	return c.Storage.Filesystem
}

// Validate checks c and fills in derived defaults (paths under DataDir).
func (c *Config) Validate() error {
	var errs []string
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Sprintf("addr %q: want host:port, e.g. 127.0.0.1:5000", c.Addr))
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		errs = append(errs, fmt.Sprintf("addr %q: port must be a number from 0 to 65535", c.Addr))
	}
	if c.DataDir == "" {
		errs = append(errs, "data_dir is empty: set a directory for Stowage's data")
	}
	errs = append(errs, c.Storage.validate("storage", c.DataDir, true)...)
	if c.Database.SQLite == "" {
		c.Database.SQLite = filepath.Join(c.DataDir, "stowage.db")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Sprintf("log.format %q: want text or json", c.Log.Format))
	}
	for name, d := range map[string]Duration{"gc.interval": c.GC.Interval, "gc.grace": c.GC.Grace, "gc.lease": c.GC.Lease, "gc.upload_expiry": c.GC.UploadExpiry, "gc.sweep_interval": c.GC.SweepInterval, "retention.interval": c.Retention.Interval, "scrub.interval": c.Scrub.Interval} {
		if d < 0 {
			errs = append(errs, name+" must not be negative")
		}
	}
	if c.GC.Lease < Duration(time.Second) {
		errs = append(errs, "gc.lease must be at least 1s (and should be far longer than a push takes: clients need time between seeing a blob and referencing it)")
	}
	if e := c.Encryption; !e.None {
		set := 0
		for _, on := range []bool{e.KeyFile != "", e.KeyEnv != "", len(e.KMSCommand) > 0} {
			if on {
				set++
			}
		}
		if set > 1 {
			errs = append(errs, "encryption: set at most one of key_file, key_env and kms_command")
		}
	}
	if c.Encryption.CacheTTL < 0 {
		errs = append(errs, "encryption.cache_ttl must not be negative")
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, "shutdown_timeout must not be negative")
	}
	if c.Database.Postgres != "" && c.Database.MaxConns < 0 {
		errs = append(errs, "database.max_conns must not be negative")
	}
	c.Tier = strings.ToLower(c.Tier)
	switch c.Tier {
	case "", "basic", "standard", "premium":
	default:
		errs = append(errs, fmt.Sprintf("tier %q: want basic, standard or premium (or leave it out for no limits)", c.Tier))
	}
	for name, r := range map[string]RateLimit{"reads": c.Limits.Reads, "writes": c.Limits.Writes, "deletes": c.Limits.Deletes, "tokens": c.Limits.Tokens} {
		if r.Registry != nil && *r.Registry < 0 || r.Identity != nil && *r.Identity < 0 {
			errs = append(errs, "limits."+name+": requests per minute must be 0 (no limit) or more")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, "tls: set both cert_file and key_file")
	}
	for _, p := range c.Auth.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			errs = append(errs, "auth.trusted_proxies: "+err.Error())
		}
	}
	if c.Auth.TokenTTL < 0 || c.Auth.RefreshTTL < 0 {
		errs = append(errs, "auth.token_ttl and auth.refresh_ttl must not be negative")
	}
	if c.Auth.Admin == "" {
		c.Auth.Admin = "admin"
	}
	if c.Auth.AdminPasswordEnv == "" {
		c.Auth.AdminPasswordEnv = "STOWAGE_ADMIN_PASSWORD"
	}
	errs = append(errs, c.Events.validate()...)
	errs = append(errs, c.Replication.validate()...)
	if len(errs) > 0 {
		return errors.New("invalid configuration:\n  - " + strings.Join(errs, "\n  - "))
	}
	return nil
}

// ParsePrefix reads a CIDR prefix (10.0.0.0/8) or a single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix (examples: 10.0.0.5, 10.0.0.0/8)", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
