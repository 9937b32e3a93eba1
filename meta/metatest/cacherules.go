package metatest

import (
	"errors"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/pullthrough"
)

// testCacheRules: the pull-through cache rules (pullthrough.Store): a name
// and a source are each unique, the sealed secret and every field come
// back as stored, deletes report a missing rule.
func testCacheRules(t *testing.T, db stowage.DB) {
	s, ok := db.(pullthrough.Store)
	if !ok {
		t.Fatalf("%T does not implement pullthrough.Store", db)
	}
	if rules, err := s.CacheRules(ctx); err != nil || len(rules) != 0 {
		t.Fatalf("CacheRules on an empty database = %v, %v", rules, err)
	}
	a := pullthrough.Record{Rule: pullthrough.Rule{Name: "hub", Source: "docker-hub/*", Upstream: "registry-1.docker.io/library/*",
		Username: "me", HasPassword: true, PlainHTTP: true, TagTTL: pullthrough.Duration(90 * time.Minute), Created: now}, Secret: []byte(`{"data_key":"x","box":"AAE="}`)}
	b := pullthrough.Record{Rule: pullthrough.Rule{Name: "alpine", Source: "alpine", Upstream: "ghcr.io/x/alpine", TagTTL: pullthrough.Duration(time.Hour), Created: now}}
	for _, r := range []pullthrough.Record{a, b} {
		if err := s.PutCacheRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, dup := range []pullthrough.Record{{Rule: pullthrough.Rule{Name: "hub", Source: "other/*", Upstream: "x.io/y/*", Created: now}},
		{Rule: pullthrough.Rule{Name: "other", Source: "docker-hub/*", Upstream: "x.io/y/*", Created: now}}} {
		if err := s.PutCacheRule(ctx, dup); !errors.Is(err, pullthrough.ErrExists) {
			t.Errorf("PutCacheRule of a duplicate %s/%s = %v, want ErrExists", dup.Name, dup.Source, err)
		}
	}
	rules, err := s.CacheRules(ctx)
	if err != nil || len(rules) != 2 || rules[0].Name != "alpine" || rules[1].Name != "hub" {
		t.Fatalf("CacheRules = %+v, %v; want alpine, hub", rules, err)
	}
	got := rules[1]
	if got.Source != a.Source || got.Upstream != a.Upstream || got.Username != a.Username || !got.PlainHTTP || !got.HasPassword ||
		got.TagTTL != a.TagTTL || !got.Created.Equal(now) || string(got.Secret) != string(a.Secret) {
		t.Errorf("stored %+v\n read %+v", a, got)
	}
	if rules[0].Secret != nil || rules[0].HasPassword || rules[0].PlainHTTP {
		t.Errorf("a rule without a secret: %+v", rules[0])
	}
	if err := s.DeleteCacheRule(ctx, "hub"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteCacheRule(ctx, "hub"); !errors.Is(err, stowage.ErrNotFound) {
		t.Errorf("DeleteCacheRule of a missing rule = %v, want ErrNotFound", err)
	}
	if rules, _ := s.CacheRules(ctx); len(rules) != 1 {
		t.Errorf("after a delete: %+v", rules)
	}
}
