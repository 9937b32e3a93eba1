package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/storage/crypt"
)

// settingEncryption records, in the DB, whether the registry's storage is
// encrypted, so a configuration that does not match the data is refused at
// startup instead of serving ciphertext or failing every pull.
const settingEncryption = "encryption"

type encryptionSetting struct {
	Encrypted bool   `json:"encrypted"`
	KeyID     string `json:"key_id,omitempty"` // the key first used
}

// keysFor builds the KEK provider the configuration selects.
func keysFor(cfg config.Config) (crypt.Keys, error) {
	e := cfg.Encryption
	switch e.Mode() {
	case "key_file":
		return crypt.OpenFileKeyring(e.KeyFile, false)
	case "key_env":
		return crypt.ParseStaticKeyring(e.KeyEnv, os.Getenv(e.KeyEnv))
	case "kms":
		return &crypt.ExecKMS{Command: e.KMSCommand}, nil
	}
	return crypt.OpenFileKeyring(ServiceKeyPath(cfg.DataDir), true)
}

// ServiceKeyPath is where the service-managed key lives.
func ServiceKeyPath(dataDir string) string { return filepath.Join(dataDir, "keys", "service.json") }

// setupEncryption wraps store in the encrypting backend (unless encryption
// is off) after checking the configuration against the data.
func (m *Main) setupEncryption(ctx context.Context, db stowage.DB, store stowage.Backend) (stowage.Backend, *crypt.Manager, error) {
	cfg := m.Config
	var rec encryptionSetting
	var known bool
	var blobs int64
	err := db.View(ctx, func(tx stowage.Tx) error {
		v, err := tx.Settings().GetSetting(settingEncryption)
		if err == nil {
			known = true
			return json.Unmarshal([]byte(v), &rec)
		}
		if !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		blobs, _, err = tx.Usage().BlobTotals()
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	counted := false // known from the blob count, not recorded
	if !known && blobs > 0 {
		known, counted = true, true // written before Stowage encrypted: plain
	}
	save := func(r encryptionSetting) error {
		b, _ := json.Marshal(r)
		return db.Update(ctx, func(tx stowage.Tx) error { return tx.Settings().PutSetting(settingEncryption, string(b), time.Now()) })
	}
	if cfg.Encryption.None {
		if known && rec.Encrypted {
			return nil, nil, fmt.Errorf("encryption is off in the configuration, but this registry's data is encrypted (first key: %s): configure its key (the default is the service key %s)", rec.KeyID, ServiceKeyPath(cfg.DataDir))
		}
		if !known || counted {
			// Recorded once: a registry of plain data that predates the
			// setting is not counted again at every start (a million
			// blobs took seconds).
			if err := save(encryptionSetting{}); err != nil {
				return nil, nil, err
			}
		}
		m.log.Warn("encryption at rest is OFF (encryption: none): blobs are stored in plain text; use this only where the storage is encrypted by other means")
		return store, nil, nil
	}
	if known && !rec.Encrypted {
		return nil, nil, fmt.Errorf("this registry's data was stored without encryption, and Stowage cannot encrypt existing data in place: start it with `encryption: none` (or STOWAGE_ENCRYPTION=none), or start a new registry and copy the images into it (skopeo sync)")
	}
	service := cfg.Encryption.Mode() == "service"
	createdKey := false
	if service {
		// Never create a new service key for data written with another one:
		// a missing key file is a lost (or misplaced) key, or, with several
		// nodes on one database, a node that was not given the first one's.
		_, err := os.Stat(ServiceKeyPath(cfg.DataDir))
		if known && errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("this registry's data is encrypted (first key: %s), but the service key file %s is missing: %s", rec.KeyID, ServiceKeyPath(cfg.DataDir), keyAdvice)
		}
		createdKey = errors.Is(err, os.ErrNotExist)
	}
	keys, err := keysFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	// forget removes a service key this start created and will not use.
	forget := func() {
		if createdKey {
			os.Remove(ServiceKeyPath(cfg.DataDir))
		}
	}
	keyStore, ok := db.(crypt.KeyStore)
	if !ok {
		forget()
		return nil, nil, fmt.Errorf("the metadata database (%T) cannot keep the encryption keys", db)
	}
	mgr := crypt.NewManager(keyStore, keys)
	mgr.CacheTTL = time.Duration(cfg.Encryption.CacheTTL)
	cur, err := keys.Current(ctx)
	if err != nil {
		forget()
		return nil, nil, fmt.Errorf("encryption key (%s): %w", keys.Describe(), err)
	}
	if known && service && rec.KeyID != "" && cur.ID != rec.KeyID && strings.HasPrefix(rec.KeyID, "service-") {
		return nil, nil, fmt.Errorf("this node's service key %s (%s) is not the key this registry's data is encrypted with (%s): %s", cur.ID, ServiceKeyPath(cfg.DataDir), rec.KeyID, keyAdvice)
	}
	unavailable, err := mgr.Check(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("encryption key (%s): %w", keys.Describe(), err)
	}
	for _, kv := range unavailable {
		m.log.Error("encryption key version unavailable: objects whose data keys it wraps cannot be read until it is back", "key", kv.String())
	}
	if !known {
		// Recorded only if no other node recorded a key meanwhile (nodes of
		// one database starting together, each with a new service key).
		rec, err := recordKey(ctx, db, encryptionSetting{Encrypted: true, KeyID: cur.ID})
		if err != nil {
			forget()
			return nil, nil, err
		}
		if rec.KeyID != cur.ID && service {
			forget()
			return nil, nil, fmt.Errorf("another node sharing this database started first with its own service key %s: this node's new key %s was discarded; %s", rec.KeyID, cur.ID, keyAdvice)
		}
	}
	m.log.Info("encryption at rest on", "keys", keys.Describe(), "current", cur.String())
	return crypt.New(store, mgr), mgr, nil
}

// keyAdvice says how to give a node the registry's key.
const keyAdvice = "with several stowage nodes on one database (PostgreSQL), every node needs the same key: " +
	"copy keys/service.json from the first node's data directory into this node's (mode 0600), " +
	"or configure all nodes with one encryption.key_file (STOWAGE_ENCRYPTION_KEY_FILE), key_env or kms_command " +
	"(docs/scale-out.md); with one node, restore the key file from your backup (docs/encryption.md): " +
	"without the key the data cannot be read"

// recordKey records the encryption setting unless one is recorded already,
// and returns what is recorded.
func recordKey(ctx context.Context, db stowage.DB, want encryptionSetting) (encryptionSetting, error) {
	var got encryptionSetting
	b, _ := json.Marshal(want)
	err := db.Update(ctx, func(tx stowage.Tx) error {
		got = want
		v, err := tx.Settings().GetSetting(settingEncryption)
		if err == nil {
			return json.Unmarshal([]byte(v), &got)
		}
		if !errors.Is(err, stowage.ErrNotFound) {
			return err
		}
		return tx.Settings().PutSetting(settingEncryption, string(b), time.Now())
	})
	return got, err
}

// managedKeys is the key manager as the management API needs it
// (mgmt.KeyManager); nil when encryption is off.
func managedKeys(m *crypt.Manager) mgmt.KeyManager {
	if m == nil {
		return nil
	}
	return mgmtKeys{m}
}

type mgmtKeys struct{ m *crypt.Manager }

func (k mgmtKeys) Status(ctx context.Context) (mgmt.KeyStatus, error) {
	st, err := k.m.Status(ctx)
	return mgmt.KeyStatus(st), err
}

func (k mgmtKeys) Rotate(ctx context.Context, newVersion bool, progress func(mgmt.KeyRotation)) (mgmt.KeyRotation, error) {
	p, err := k.m.Rotate(ctx, crypt.RotateOptions{NewVersion: newVersion, Progress: func(p crypt.RotateProgress) {
		if progress != nil {
			progress(mgmt.KeyRotation(p))
		}
	}})
	return mgmt.KeyRotation(p), err
}

func (k mgmtKeys) Current(ctx context.Context) (stowage.KeyVersion, error) {
	return k.m.Keys.Current(ctx)
}

func (k mgmtKeys) Retire(ctx context.Context, kv stowage.KeyVersion) error {
	return k.m.Retire(ctx, kv)
}
