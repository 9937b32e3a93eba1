package stowage_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// testKeyring wraps keys with one AES-GCM key (version 1).
type testKeyring struct{ kek []byte }

func (k testKeyring) Describe() string { return "test keyring" }
func (k testKeyring) Current(context.Context) (stowage.KeyVersion, error) {
	return stowage.KeyVersion{ID: "test", Version: 1}, nil
}
func (k testKeyring) aead() cipher.AEAD {
	b, _ := aes.NewCipher(k.kek)
	g, _ := cipher.NewGCM(b)
	return g
}
func (k testKeyring) Wrap(_ context.Context, _ stowage.KeyVersion, key []byte) ([]byte, error) {
	n := make([]byte, 12)
	rand.Read(n)
	return k.aead().Seal(n, n, key, nil), nil
}
func (k testKeyring) Unwrap(_ context.Context, _ stowage.KeyVersion, w []byte) ([]byte, error) {
	return k.aead().Open(nil, w[:12], w[12:], nil)
}

func TestSecretBox(t *testing.T) {
	ctx := context.Background()
	keys := testKeyring{kek: bytes.Repeat([]byte{7}, 32)}
	aad := func(id string) []byte { return []byte("test:hook:" + id) }
	secret := []byte("s3cret header value")
	box, dk, err := stowage.SealSecret(ctx, keys, "webhook:hook", aad, secret, time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	if dk.Object != "webhook:hook" || dk.ID == "" || dk.Wrapped.Version != 1 || bytes.Contains(box, secret) || bytes.Contains(dk.Key, secret) {
		t.Fatalf("data key %+v, box %x: the secret must be sealed, the key wrapped", dk, box)
	}
	got, err := stowage.OpenSecret(ctx, keys, dk, aad(dk.ID), box)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("OpenSecret = %q, %v", got, err)
	}
	flipped := bytes.Clone(box)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct {
		name string
		aad  []byte
		box  []byte
	}{
		{"another record's additional data", []byte("test:other:" + dk.ID), box},
		{"a damaged box", aad(dk.ID), flipped},
		{"a truncated box", aad(dk.ID), box[:5]},
	} {
		if _, err := stowage.OpenSecret(ctx, keys, dk, tc.aad, tc.box); !errors.Is(err, stowage.ErrSecretDamaged) {
			t.Errorf("%s: %v, want ErrSecretDamaged", tc.name, err)
		}
	}
	other := testKeyring{kek: bytes.Repeat([]byte{8}, 32)}
	if _, err := stowage.OpenSecret(ctx, other, dk, aad(dk.ID), box); err == nil {
		t.Errorf("opened with another keyring")
	}
}
