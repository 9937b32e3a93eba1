package main

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/storage/crypt"
	"github.com/stowage/stowage/storage/mirror"
	"github.com/stowage/stowage/storage/shard"
)

// TestManagementWire: the management API declares its own copies of the
// storage packages' reports (so it imports none of them); converted, they
// say the same as the originals in JSON, field for field, name for name.
func TestManagementWire(t *testing.T) {
	kv := stowage.KeyVersion{ID: "service-1", Version: 2}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ks := crypt.Status{Provider: "file", Current: kv, Versions: []stowage.KeyVersion{kv}, DataKeys: []stowage.KeyVersionCount{{KeyVersion: kv, Count: 3}}}
	rp := crypt.RotateProgress{Current: kv, Rewrapped: 1, Total: 2, Done: true}
	rb := shard.RebalanceProgress{Total: 1, Scanned: 2, Misplaced: 3, Moved: 4, Skipped: 5, Bytes: 6}
	ms := mirror.Status{WriteQuorum: 2, PendingRepairs: 3, Repaired: 4, Lost: 1, LostObjects: []string{"blobs/sha256/ab/ab12"},
		Copies: []mirror.CopyStatus{{Name: "east", State: "degraded", Failures: 1, LastError: "boom", LastErrorAt: at, LastOK: at}}}
	old := struct {
		Path string `json:"path"`
		mirror.Status
	}{"storage", ms}
	for _, tc := range []struct {
		name     string
		from, to any
	}{
		{"rebalance", rb, mgmt.RebalanceProgress(rb)},
		{"mirror", old, mgmt.MirrorStatus{Path: "storage", WriteQuorum: ms.WriteQuorum, Copies: copyStatus(ms.Copies),
			PendingRepairs: ms.PendingRepairs, Repaired: ms.Repaired, Lost: ms.Lost, LostObjects: ms.LostObjects}},
	} {
		a, err := json.Marshal(tc.from)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(tc.to)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s: the management API says\n%s\nwhere the storage package says\n%s", tc.name, b, a)
		}
	}
	// The key reports have the API's own lowerCamel names (the storage
	// package's are Go's); they decode back to the same values.
	for _, tc := range []struct {
		name string
		v    any
		want string
		back any
	}{
		{"key status", mgmt.KeyStatus(ks), `{"provider":"file","current":{"id":"service-1","version":2},"versions":[{"id":"service-1","version":2}],"dataKeys":[{"id":"service-1","version":2,"count":3}]}`, &mgmt.KeyStatus{}},
		{"rotation", mgmt.KeyRotation(rp), `{"current":{"id":"service-1","version":2},"rewrapped":1,"total":2,"done":true}`, &mgmt.KeyRotation{}},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: %s (%v), want %s", tc.name, b, err, tc.want)
		}
		if err := json.Unmarshal(b, tc.back); err != nil || !reflect.DeepEqual(reflect.ValueOf(tc.back).Elem().Interface(), tc.v) {
			t.Errorf("%s: decodes to %+v (%v), want %+v", tc.name, tc.back, err, tc.v)
		}
	}
}
