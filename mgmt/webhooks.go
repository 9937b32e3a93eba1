package mgmt

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/webhook"
)

// Webhooks is what /api/v1/webhooks needs (*webhook.Service).
type Webhooks interface {
	Create(ctx context.Context, name string, sp webhook.Spec) (webhook.Webhook, error)
	Update(ctx context.Context, name string, sp webhook.Spec) (webhook.Webhook, error)
	Delete(ctx context.Context, name string) error
	List(ctx context.Context) ([]webhook.Webhook, error)
	Show(ctx context.Context, name string) (webhook.Webhook, webhook.Status, error)
	Deliveries(ctx context.Context, name string, n int) ([]webhook.Delivery, error)
	Ping(ctx context.Context, name string) (webhook.Delivery, error)
}

// WithWebhooks enables /api/v1/webhooks.
func (h *Handler) WithWebhooks(w Webhooks) *Handler {
	h.hooks = w
	return h
}

// DeliveryJSON is one delivery attempt as the API shows it.
type DeliveryJSON struct {
	ID         int64   `json:"id"`
	Time       string  `json:"time"`
	EventID    string  `json:"eventId,omitempty"`
	Seq        int64   `json:"seq,omitempty"`
	Action     string  `json:"action,omitempty"`
	Repository string  `json:"repository,omitempty"`
	Tag        string  `json:"tag,omitempty"`
	Digest     string  `json:"digest,omitempty"`
	Attempt    int     `json:"attempt,omitempty"`
	Status     int     `json:"status"`
	DurationMS float64 `json:"durationMs"`
	Error      string  `json:"error,omitempty"`
	Delivered  bool    `json:"delivered"`
}

// ToDeliveryJSON converts a delivery for the API.
func ToDeliveryJSON(d webhook.Delivery) DeliveryJSON {
	return DeliveryJSON{ID: d.ID, Time: d.Time.UTC().Format(time.RFC3339Nano), EventID: d.EventID, Seq: d.Seq, Action: string(d.Action),
		Repository: d.Repo, Tag: d.Tag, Digest: d.Digest, Attempt: d.Attempt, Status: d.Status,
		DurationMS: float64(d.Duration.Microseconds()) / 1000, Error: d.Error, Delivered: d.Error == ""}
}

// WebhookShow is the body of GET /api/v1/webhooks/<name>.
type WebhookShow struct {
	Webhook webhook.Webhook `json:"webhook"`
	Status  webhook.Status  `json:"status"`
}

// serveWebhooks answers /api/v1/webhooks[/<name>[/ping|/events]] (admin
// only when access control is on: auth's default for /api/v1).
func (h *Handler) serveWebhooks(ctx context.Context, w http.ResponseWriter, r *http.Request, arg string) error {
	if h.hooks == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "/api/v1/webhooks is not enabled on this management API")
	}
	name, sub, _ := strings.Cut(arg, "/")
	switch {
	case name == "" && r.Method == http.MethodGet:
		hs, err := h.hooks.List(ctx)
		if err != nil {
			return err
		}
		return writeJSON(w, map[string]any{"webhooks": hs})
	case name != "" && sub == "" && r.Method == http.MethodGet:
		hk, st, err := h.hooks.Show(ctx, name)
		if err != nil {
			return err
		}
		return writeJSON(w, WebhookShow{hk, st})
	case name != "" && sub == "" && (r.Method == http.MethodPut || r.Method == http.MethodPatch):
		var sp webhook.Spec
		if err := decodeBody(r, &sp); err != nil {
			return err
		}
		var hk webhook.Webhook
		var err error
		if r.Method == http.MethodPut {
			hk, err = h.hooks.Create(ctx, name, sp)
		} else {
			hk, err = h.hooks.Update(ctx, name, sp)
		}
		if err != nil {
			return err
		}
		h.log.Info("webhook changed", "webhook", name, "method", r.Method, "uri", hk.URI)
		return writeJSON(w, map[string]any{"webhook": hk})
	case name != "" && sub == "" && r.Method == http.MethodDelete:
		if err := h.hooks.Delete(ctx, name); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case name != "" && sub == "ping" && r.Method == http.MethodPost:
		d, err := h.hooks.Ping(ctx, name)
		if err != nil {
			return err
		}
		return writeJSON(w, ToDeliveryJSON(d))
	case name != "" && sub == "events" && r.Method == http.MethodGet:
		n := 20
		if s := r.URL.Query().Get("n"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v < 0 {
				return stowage.Errorf(stowage.CodeInvalidParameter, "n=%q: want how many delivery attempts to show (0: all kept)", s)
			}
			n = v
		}
		ds, err := h.hooks.Deliveries(ctx, name, n)
		if err != nil {
			return err
		}
		out := make([]DeliveryJSON, 0, len(ds))
		for _, d := range ds {
			out = append(out, ToDeliveryJSON(d))
		}
		return writeJSON(w, map[string]any{"deliveries": out})
	}
	return notFound(r)
}
