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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
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
}

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

// Database configures the metadata store.
type Database struct {
	// SQLite is the path of the embedded database; default <data_dir>/stowage.db.
	SQLite string `yaml:"sqlite"`
}

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
			UploadExpiry: Duration(24 * time.Hour)},
		Retention: Retention{Interval: Duration(time.Hour)},
		Scrub:     Scrub{Interval: Duration(7 * 24 * time.Hour)},
	}
}

// Load reads a YAML file over c. Unknown keys are errors (a typo must not be
// silently ignored).
func (c *Config) Load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
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
		"STOWAGE_GC_LEASE": &c.GC.Lease, "STOWAGE_GC_UPLOAD_EXPIRY": &c.GC.UploadExpiry} {
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
	return nil
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
	for name, d := range map[string]Duration{"gc.interval": c.GC.Interval, "gc.grace": c.GC.Grace, "gc.lease": c.GC.Lease, "gc.upload_expiry": c.GC.UploadExpiry, "retention.interval": c.Retention.Interval, "scrub.interval": c.Scrub.Interval} {
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
	if len(errs) > 0 {
		return errors.New("invalid configuration:\n  - " + strings.Join(errs, "\n  - "))
	}
	return nil
}
