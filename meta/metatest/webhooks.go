package metatest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/webhook"
)

// RunWebhooks checks a webhook.Store: create, read, update, delete (with
// the webhook's data keys), and the bounded delivery log.
func RunWebhooks(t *testing.T, open func(t *testing.T) (stowage.DB, webhook.Store)) {
	ctx := context.Background()
	db, s := open(t)
	now := time.Unix(1_700_000_000, 0).UTC()
	key := func(id string) *stowage.DataKey {
		return &stowage.DataKey{ID: id, Object: webhook.DataKeyObject("ci"), Wrapped: stowage.KeyVersion{ID: "k", Version: 1}, Key: []byte("wrapped-" + id), Created: now}
	}
	hasKey := func(id string) bool {
		t.Helper()
		var found bool
		if err := db.View(ctx, func(tx stowage.Tx) error {
			_, err := tx.DataKeys().GetDataKey(id)
			found = err == nil
			if errors.Is(err, stowage.ErrNotFound) {
				return nil
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return found
	}
	r := webhook.Record{Name: "ci", ID: "id1", URI: "http://127.0.0.1:1/hook", Actions: []webhook.Action{webhook.ActionPush, webhook.ActionDelete},
		Scope: "app:*", HeaderNames: []string{"Authorization", "X-Team"}, HasSecret: true, Sealed: []byte{0, 1, 2, 255}, DataKey: "dk1",
		Enabled: true, Created: now, Updated: now}
	if _, err := s.Webhook(ctx, "ci"); !errors.Is(err, stowage.ErrNotFound) {
		t.Fatalf("Webhook of a missing name: %v, want ErrNotFound", err)
	}
	if err := s.CreateWebhook(ctx, r, key("dk1")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateWebhook(ctx, r, nil); !errors.Is(err, webhook.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	got, err := s.Webhook(ctx, "ci")
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("Webhook = %+v, %v; want %+v", got, err, r)
	}
	if !hasKey("dk1") {
		t.Fatal("the data key was not stored with the webhook")
	}
	plain := webhook.Record{Name: "a-plain", ID: "id0", URI: "https://example.com/", Actions: []webhook.Action{webhook.ActionPush}, Created: now, Updated: now}
	if err := s.CreateWebhook(ctx, plain, nil); err != nil {
		t.Fatal(err)
	}
	all, err := s.Webhooks(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "a-plain" || all[1].Name != "ci" {
		t.Fatalf("Webhooks = %+v, %v", all, err)
	}
	// Update without a new key keeps the key; with one, the old one goes.
	r.URI, r.Enabled, r.Updated = "http://127.0.0.1:2/x", false, now.Add(time.Minute)
	if err := s.UpdateWebhook(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Webhook(ctx, "ci"); !reflect.DeepEqual(got, r) || !hasKey("dk1") {
		t.Fatalf("after update: %+v (key kept: %t)", got, hasKey("dk1"))
	}
	r.Sealed, r.DataKey = []byte{9}, "dk2"
	if err := s.UpdateWebhook(ctx, r, key("dk2")); err != nil {
		t.Fatal(err)
	}
	if hasKey("dk1") || !hasKey("dk2") {
		t.Fatalf("after resealing: dk1 kept %t, dk2 stored %t", hasKey("dk1"), hasKey("dk2"))
	}
	r.Sealed, r.DataKey, r.HasSecret, r.HeaderNames = nil, "", false, nil
	if err := s.UpdateWebhook(ctx, r, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Webhook(ctx, "ci"); !reflect.DeepEqual(got, r) || hasKey("dk2") {
		t.Fatalf("after clearing the secrets: %+v (key kept: %t)", got, hasKey("dk2"))
	}
	if err := s.UpdateWebhook(ctx, webhook.Record{Name: "nope", Created: now, Updated: now}, nil); !errors.Is(err, stowage.ErrNotFound) {
		t.Fatalf("update of a missing webhook: %v", err)
	}
	// The delivery log keeps the newest keep entries, newest first.
	for i := 1; i <= 7; i++ {
		d := webhook.Delivery{Webhook: "ci", Time: now.Add(time.Duration(i) * time.Second), EventID: "e", Seq: int64(i), Action: webhook.ActionPush,
			Repo: "app", Tag: "v1", Digest: "sha256:x", Attempt: 1, Status: 500, Duration: time.Millisecond, Error: "boom"}
		if err := s.AddDelivery(ctx, d, 5); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddDelivery(ctx, webhook.Delivery{Webhook: "a-plain", Time: now}, 5); err != nil {
		t.Fatal(err)
	}
	ds, err := s.Deliveries(ctx, "ci", 0)
	if err != nil || len(ds) != 5 || ds[0].Seq != 7 || ds[4].Seq != 3 || ds[0].ID != 7 {
		t.Fatalf("Deliveries = %+v, %v; want seq 7..3", ds, err)
	}
	want := webhook.Delivery{Webhook: "ci", ID: 7, Time: now.Add(7 * time.Second), EventID: "e", Seq: 7, Action: webhook.ActionPush,
		Repo: "app", Tag: "v1", Digest: "sha256:x", Attempt: 1, Status: 500, Duration: time.Millisecond, Error: "boom"}
	if !reflect.DeepEqual(ds[0], want) {
		t.Fatalf("delivery = %+v, want %+v", ds[0], want)
	}
	if ds, _ := s.Deliveries(ctx, "ci", 2); len(ds) != 2 {
		t.Fatalf("Deliveries(2) = %d entries", len(ds))
	}
	// Delete takes the log and the keys with it.
	r.Sealed, r.DataKey = []byte{1}, "dk3"
	if err := s.UpdateWebhook(ctx, r, key("dk3")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWebhook(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWebhook(ctx, "ci"); !errors.Is(err, stowage.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if ds, _ := s.Deliveries(ctx, "ci", 0); len(ds) != 0 || hasKey("dk3") {
		t.Fatalf("after delete: %d deliveries, key kept %t", len(ds), hasKey("dk3"))
	}
	if ds, _ := s.Deliveries(ctx, "a-plain", 0); len(ds) != 1 {
		t.Fatalf("another webhook's log: %d entries", len(ds))
	}
}
