package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

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

func scanWebhook(scan func(...any) error) (webhook.Record, error) {
	var r webhook.Record
	var actions, headers string
	var created, updated int64
	err := scan(&r.Name, &r.ID, &r.URI, &actions, &r.Scope, &headers, &r.HasSecret, &r.Sealed, &r.DataKey, &r.Enabled, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return r, stowage.ErrNotFound
	}
	r.Actions, r.HeaderNames = splitList[webhook.Action](actions), splitList[string](headers)
	r.Created, r.Updated = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return r, err
}

func webhookArgs(r webhook.Record) []any {
	return []any{r.Name, r.ID, r.URI, joinList(r.Actions), r.Scope, joinList(r.HeaderNames), r.HasSecret, r.Sealed, r.DataKey, r.Enabled,
		r.Created.UnixNano(), r.Updated.UnixNano()}
}

func (s webhookStore) Webhooks(ctx context.Context) (out []webhook.Record, err error) {
	err = s.db.keyView(ctx, func(t *Tx) error {
		rows, err := t.query(`SELECT ` + webhookColumns + ` FROM webhooks ORDER BY name`)
		out, err = scanAll(rows, err, scanWebhook)
		return err
	})
	return out, err
}

func (s webhookStore) Webhook(ctx context.Context, name string) (r webhook.Record, err error) {
	err = s.db.keyView(ctx, func(t *Tx) (err error) {
		r, err = scanWebhook(t.row(`SELECT `+webhookColumns+` FROM webhooks WHERE name = ?`, name).Scan)
		return err
	})
	return r, err
}

func (s webhookStore) CreateWebhook(ctx context.Context, r webhook.Record, key *stowage.DataKey) error {
	return s.db.keyUpdate(ctx, func(t *Tx) error {
		res, err := t.exec(`INSERT INTO webhooks (`+webhookColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`, webhookArgs(r)...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return webhook.ErrExists
		}
		if _, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook = ?`, r.Name); err != nil {
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
		a := webhookArgs(r)
		res, err := t.exec(`UPDATE webhooks SET id = ?, uri = ?, actions = ?, scope = ?, header_names = ?, has_secret = ?, sealed = ?, data_key = ?,
			enabled = ?, created = ?, updated = ? WHERE name = ?`, append(a[1:], a[0])...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
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
		res, err := t.exec(`DELETE FROM webhooks WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return stowage.ErrNotFound
		}
		if _, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook = ?`, name); err != nil {
			return err
		}
		return t.deleteDataKeys(webhook.DataKeyObject(name))
	})
}

func (s webhookStore) AddDelivery(ctx context.Context, d webhook.Delivery, keep int) error {
	return s.db.keyUpdate(ctx, func(t *Tx) error {
		var id int64
		if err := t.row(`SELECT COALESCE(MAX(id), 0) + 1 FROM webhook_deliveries WHERE webhook = ?`, d.Webhook).Scan(&id); err != nil {
			return err
		}
		if _, err := t.exec(`INSERT INTO webhook_deliveries (webhook, id, time, event_id, seq, action, repo, tag, digest, attempt, status, duration, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.Webhook, id, d.Time.UnixNano(), d.EventID, d.Seq, string(d.Action), d.Repo, d.Tag, d.Digest,
			d.Attempt, d.Status, int64(d.Duration), d.Error); err != nil {
			return err
		}
		_, err := t.exec(`DELETE FROM webhook_deliveries WHERE webhook = ? AND id <= ?`, d.Webhook, id-int64(max(keep, 1)))
		return err
	})
}

func (s webhookStore) Deliveries(ctx context.Context, name string, limit int) (out []webhook.Delivery, err error) {
	err = s.db.keyView(ctx, func(t *Tx) error {
		rows, err := t.query(`SELECT webhook, id, time, event_id, seq, action, repo, tag, digest, attempt, status, duration, error
			FROM webhook_deliveries WHERE webhook = ? ORDER BY id DESC LIMIT ?`, name, limitOf(limit))
		out, err = scanAll(rows, err, func(scan func(...any) error) (webhook.Delivery, error) {
			var d webhook.Delivery
			var tm, dur int64
			err := scan(&d.Webhook, &d.ID, &tm, &d.EventID, &d.Seq, &d.Action, &d.Repo, &d.Tag, &d.Digest, &d.Attempt, &d.Status, &dur, &d.Error)
			d.Time, d.Duration = time.Unix(0, tm).UTC(), time.Duration(dur)
			return d, err
		})
		return err
	})
	return out, err
}
