package postgres_test

import (
	"testing"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/metatest"
	"github.com/stowage/stowage/meta/postgres/pgtest"
	"github.com/stowage/stowage/webhook"
)

func TestWebhookStore(t *testing.T) {
	pgtest.Server(t)
	metatest.RunWebhooks(t, func(t *testing.T) (stowage.DB, webhook.Store) {
		db := open(t, pgtest.Schema(t, "stowage_test"))
		return db, db.Webhooks()
	})
}
