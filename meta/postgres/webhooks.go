package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/webhook"
)

// Webhooks returns the store of webhooks and their delivery log.
func (db *DB) Webhooks() webhook.Store { return webhookStore{db} }

var _ webhook.Provider = (*DB)(nil)

type webhookStore struct{ db *DB }

const webhookColumns = `name, id, uri, actions, scope, header_names, has_secret, sealed, data_key, enabled, created, updated`

func joinList[T ~string](v []T) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = string(x)
	}
	return strings.Join(s, ",")
}

func splitList[T ~string](s string) []T {
	if s == "" {
		return nil
	}
	var out []T
	for _, x := range strings.Split(s, ",") {
		out = append(out, T(x))
	}
	return out
}

func scanWebhook(row pgx.CollectableRow) (webhook.Record, error) {
	var r webhook.Record
	var actions, headers string
	var hasSecret, enabled, created, updated int64
	err := row.Scan(&r.Name, &r.ID, &r.URI, &actions, &r.Scope, &headers, &hasSecret, &r.Sealed, &r.DataKey, &enabled, &created, &updated)
	r.Actions, r.HeaderNames = splitList[webhook.Action](actions), splitList[string](headers)
	r.HasSecret, r.Enabled = hasSecret != 0, enabled != 0
	r.Created, r.Updated = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return r, err
}

func webhookArgs(r webhook.Record) []any {
	return []any{r.Name, r.ID, r.URI, joinList(r.Actions), r.Scope, joinList(r.HeaderNames), int64(boolInt(r.HasSecret)), r.Sealed, r.DataKey,
		int64(boolInt(r.Enabled)), r.Created.UnixNano(), r.Updated.UnixNano()}
}

func (s webhookStore) Webhooks(ctx context.Context) (out []webhook.Record, err error) {
	err = s.db.keyView(ctx, func(t *Tx) error {
		rows, err := t.tx.Query(t.ctx, `SELECT `+webhookColumns+` FROM webhooks ORDER BY name COLLATE "C"`)
		if err != nil {
			return t.note(err)
		}
		out, err = pgx.CollectRows(rows, scanWebhook)
		return t.note(err)
	})
	return out, err
}

func (s webhookStore) Webhook(ctx context.Context, name string) (r webhook.Record, err error) {
	err = s.db.keyView(ctx, func(t *Tx) (err error) {
		r, err = first(t, `SELECT `+webhookColumns+` FROM webhooks WHERE name = $1`, []any{name}, scanWebhook)
		return err
	})
	return r, err
}

func (s webhookStore) CreateWebhook(ctx context.Context, r webhook.Record, key *stowage.DataKey) error {
	return s.db.keyUpdate(ctx, func(t *Tx) error {
		tag, err := t.exec(`INSERT INTO webhooks (`+webhookColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (name) DO NOTHING`, webhookArgs(r)...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return webhook.ErrExists
		}
		if _, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook = $1`, r.Name); err != nil {
			return err
		}
		if err := t.deleteDataKeys(webhook.DataKeyObject(r.Name)); err != nil {
			return err
		}
		if key != nil {
			return t.PutDataKey(*key)
		}
		return nil
	})
}

func (s webhookStore) UpdateWebhook(ctx context.Context, r webhook.Record, key *stowage.DataKey) error {
	return s.db.keyUpdate(ctx, func(t *Tx) error {
		tag, err := t.exec(`UPDATE webhooks SET id = $2, uri = $3, actions = $4, scope = $5, header_names = $6, has_secret = $7, sealed = $8,
			data_key = $9, enabled = $10, created = $11, updated = $12 WHERE name = $1`, webhookArgs(r)...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return stowage.ErrNotFound
		}
		if key == nil && r.DataKey != "" {
			return nil // the sealed secrets did not change
		}
		if err := t.deleteDataKeys(webhook.DataKeyObject(r.Name)); err != nil {
			return err
		}
		if key != nil {
			return t.PutDataKey(*key)
		}
		return nil
	})
}

func (s webhookStore) DeleteWebhook(ctx context.Context, name string) error {
	return s.db.keyUpdate(ctx, func(t *Tx) error {
		tag, err := t.exec(`DELETE FROM webhooks WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return stowage.ErrNotFound
		}
		if _, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook = $1`, name); err != nil {
			return err
		}
		return t.deleteDataKeys(webhook.DataKeyObject(name))
	})
}

func (s webhookStore) AddDelivery(ctx context.Context, d webhook.Delivery, keep int) error {
	return s.db.keyUpdate(ctx, func(t *Tx) error {
		var id int64
		if err := t.one(`SELECT COALESCE(MAX(id), 0) + 1 FROM webhook_deliveries WHERE webhook = $1`, []any{d.Webhook}, &id); err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO webhook_deliveries (webhook, id, time, event_id, seq, action, repo, tag, digest, attempt, status, duration, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`, d.Webhook, id, d.Time.UnixNano(), d.EventID, d.Seq, string(d.Action),
			d.Repo, d.Tag, d.Digest, int64(d.Attempt), int64(d.Status), int64(d.Duration), d.Error); err != nil {
			return err
		}
		_, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook = $1 AND id <= $2`, d.Webhook, id-int64(max(keep, 1)))
		return err
	})
}

func (s webhookStore) Deliveries(ctx context.Context, name string, limit int) (out []webhook.Delivery, err error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	err = s.db.keyView(ctx, func(t *Tx) error {
		rows, err := t.tx.Query(t.ctx, `SELECT webhook, id, time, event_id, seq, action, repo, tag, digest, attempt, status, duration, error
			FROM webhook_deliveries WHERE webhook = $1 ORDER BY id DESC LIMIT $2`, name, limit)
		if err != nil {
			return t.note(err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (webhook.Delivery, error) {
			var d webhook.Delivery
			var tm, dur, attempt, status int64
			var action string
			err := row.Scan(&d.Webhook, &d.ID, &tm, &d.EventID, &d.Seq, &action, &d.Repo, &d.Tag, &d.Digest, &attempt, &status, &dur, &d.Error)
			d.Time, d.Duration, d.Attempt, d.Status, d.Action = time.Unix(0, tm).UTC(), time.Duration(dur), int(attempt), int(status), webhook.Action(action)
			return d, err
		})
		return t.note(err)
	})
	return out, err
}
