package metatest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/ui/sessionstore"
)

// RunUISessions checks a database's web UI session store: a session put
// is found until it expires, not after; delete removes it; the limit of
// live sessions refuses more, and expired ones do not count.
func RunUISessions(t *testing.T, open func(t *testing.T) stowage.DB) {
	ctx := context.Background()
	db := open(t)
	st, ok := sessionstore.Of(db)
	if !ok {
		t.Fatal("the database keeps no UI sessions")
	}
	now := time.Unix(1_800_000_000, 0)
	s := sessionstore.Session{IDHash: sessionstore.HashID("id-1"), Name: "alice", Sealed: []byte{1, 2, 0, 3}, Nonce: []byte{9, 8},
		CSRF: "csrf-1", Expires: now.Add(time.Hour)}
	if err := st.PutSession(ctx, s, now, 2); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetSession(ctx, s.IDHash, now)
	if err != nil || got.Name != s.Name || string(got.Sealed) != string(s.Sealed) || string(got.Nonce) != string(s.Nonce) ||
		got.CSRF != s.CSRF || !got.Expires.Equal(s.Expires) {
		t.Fatalf("get: %+v %v, want %+v", got, err, s)
	}
	if _, err := st.GetSession(ctx, s.IDHash, now.Add(time.Hour)); !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("get after expiry: %v, want ErrNotFound", err)
	}
	s2 := s
	s2.IDHash = sessionstore.HashID("id-2")
	if err := st.PutSession(ctx, s2, now, 2); err != nil {
		t.Fatal(err)
	}
	s3 := s
	s3.IDHash = sessionstore.HashID("id-3")
	if err := st.PutSession(ctx, s3, now, 2); stowage.ErrorCodeOf(err) != stowage.CodeTooManyRequests {
		t.Errorf("a third session with a limit of 2: %v, want TOOMANYREQUESTS", err)
	}
	// Once the first two expired, they neither count nor stay.
	if err := st.PutSession(ctx, s3, now.Add(2*time.Hour), 2); err != nil {
		t.Errorf("a session after the others expired: %v", err)
	}
	if err := st.DeleteSession(ctx, s3.IDHash); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetSession(ctx, s3.IDHash, now); !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if err := st.DeleteSession(ctx, s3.IDHash); err != nil {
		t.Errorf("deleting a missing session: %v", err)
	}
}
