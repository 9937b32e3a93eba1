package stowage

import (
	"context"
	"errors"
	"testing"
)

// lockerDB is a DB with job locks shared by two "nodes" (two Registry
// values): what PostgreSQL's advisory locks give separate processes.
type lockerDB struct {
	DB
	held map[string]bool
}

func (l *lockerDB) TryLock(ctx context.Context, name string) (context.Context, func(), error) {
	if l.held[name] {
		return nil, nil, ErrLocked
	}
	l.held[name] = true
	c, cancel := context.WithCancel(ctx)
	return c, func() { cancel(); delete(l.held, name) }, nil
}

// TestLockUploadAcrossNodes: while one node writes an upload session,
// another node's writer of the same session is refused; other sessions and
// the same session afterwards are not.
func TestLockUploadAcrossNodes(t *testing.T) {
	db := &lockerDB{held: map[string]bool{}}
	a, b := NewRegistry(db, nil, Options{}), NewRegistry(db, nil, Options{})
	ctx := context.Background()
	unlock, err := a.lockUpload(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if _, err := b.lockUpload(ctx, "s1"); !errors.As(err, &e) || e.Code != CodeBlobUploadInvalid {
		t.Errorf("second node, same session: err = %v, want BLOB_UPLOAD_INVALID", err)
	}
	unlock2, err := b.lockUpload(ctx, "s2")
	if err != nil {
		t.Errorf("second node, another session: %v", err)
	} else {
		unlock2()
	}
	unlock()
	unlock3, err := b.lockUpload(ctx, "s1")
	if err != nil {
		t.Errorf("second node after the first finished: %v", err)
	} else {
		unlock3()
	}
}
