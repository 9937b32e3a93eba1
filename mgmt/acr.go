package mgmt

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/internal/httperr"
)

// ACR serves the Azure Container Registry data-plane management routes
// (/acr/v1/), so tools written for ACR work against Stowage: the same paths,
// JSON field names, pagination and status codes.
type ACR struct {
	reg *stowage.Registry
	log *slog.Logger
}

// NewACR returns the /acr/v1/ handler.
func NewACR(reg *stowage.Registry, log *slog.Logger) *ACR {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ACR{reg: reg, log: log}
}

func (a *ACR) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = stowage.WithRequestActor(r) // who made the changes, for the change feed
	if err := a.serve(w, r); err != nil {
		httperr.Write(w, r, a.log, err)
	}
}

// acrAttributes is ACR's changeableAttributes object.
type acrAttributes struct {
	DeleteEnabled bool `json:"deleteEnabled"`
	WriteEnabled  bool `json:"writeEnabled"`
	ReadEnabled   bool `json:"readEnabled"`
	ListEnabled   bool `json:"listEnabled"`
}

func attrs(l stowage.Locks) acrAttributes {
	return acrAttributes{l&stowage.LockDelete == 0, l&stowage.LockWrite == 0, l&stowage.LockRead == 0, l&stowage.LockList == 0}
}

func rfc3339(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

func (a *ACR) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, "/acr/v1/")
	if !ok {
		return notFound(r)
	}
	ctx := r.Context()
	if rest == "_catalog" && r.Method == http.MethodGet {
		return a.catalog(ctx, w, r)
	}
	// <name>, <name>/_tags[/<tag>], <name>/_manifests[/<digest>]
	name, kind, item := rest, "", ""
	for _, k := range []string{"/_tags", "/_manifests"} {
		if i := strings.LastIndex(rest, k); i > 0 && (len(rest) == i+len(k) || rest[i+len(k)] == '/') {
			name, kind, item = rest[:i], k[2:], strings.TrimPrefix(rest[i+len(k):], "/")
			break
		}
	}
	if err := stowage.ValidateName(name); err != nil {
		return err
	}
	switch {
	case kind == "" && r.Method == http.MethodGet:
		return a.repository(ctx, w, r, name)
	case kind == "" && r.Method == http.MethodPatch:
		if err := a.patch(ctx, w, r, name, stowage.Reference{}); err != nil {
			return err
		}
		return a.repository(ctx, w, r, name)
	case kind == "" && r.Method == http.MethodDelete:
		rep, err := a.reg.DeleteRepository(ctx, name, false)
		if err != nil {
			return err
		}
		digests := []string{}
		for _, m := range rep.Manifests {
			digests = append(digests, string(m.Digest))
		}
		return writeStatus(w, http.StatusAccepted, map[string]any{"manifestsDeleted": digests, "tagsDeleted": rep.Tags})
	case kind == "tags" && item == "" && r.Method == http.MethodGet:
		return a.tags(ctx, w, r, name)
	case kind == "tags" && item != "":
		if err := stowage.ValidateTag(item); err != nil {
			return err
		}
		return a.tag(ctx, w, r, name, item)
	case kind == "manifests" && item == "" && r.Method == http.MethodGet:
		return a.manifests(ctx, w, r, name)
	case kind == "manifests" && item != "":
		d, err := stowage.ParseDigest(item)
		if err != nil {
			return err
		}
		return a.manifest(ctx, w, r, name, d)
	}
	return notFound(r)
}

func (a *ACR) catalog(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	n, err := pageSize(r)
	if err != nil {
		return err
	}
	names, err := a.reg.Catalog(ctx, r.URL.Query().Get("last"), n+1)
	if err != nil {
		return err
	}
	if len(names) > n {
		names = names[:n]
		setNext(w, r, names[n-1])
	}
	if names == nil {
		names = []string{}
	}
	return writeJSON(w, map[string]any{"repositories": names})
}

func (a *ACR) repository(ctx context.Context, w http.ResponseWriter, r *http.Request, name string) error {
	info, err := a.reg.RepositoryInfo(ctx, name)
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]any{
		"registry": r.Host, "imageName": name,
		"createdTime": rfc3339(info.Created), "lastUpdateTime": rfc3339(info.Updated),
		"manifestCount": info.Manifests, "tagCount": info.Tags,
		"changeableAttributes": attrs(info.Locks),
	})
}

// patch applies an ACR attributes body ({"writeEnabled": false, …}; fields
// left out stay as they are) to a repository, tag or manifest.
func (a *ACR) patch(ctx context.Context, w http.ResponseWriter, r *http.Request, name string, ref stowage.Reference) error {
	var body Attributes
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	set, clear := body.changes()
	_, err := a.reg.SetLocks(ctx, name, ref, set, clear)
	return err
}

type acrTag struct {
	Name           string        `json:"name"`
	Digest         string        `json:"digest"`
	CreatedTime    string        `json:"createdTime"`
	LastUpdateTime string        `json:"lastUpdateTime"`
	Signed         bool          `json:"signed"`
	Attributes     acrAttributes `json:"changeableAttributes"`
}

func tagJSON(t stowage.TagRecord) acrTag {
	return acrTag{t.Name, string(t.Digest), rfc3339(t.Created), rfc3339(t.Updated), false, attrs(t.Locks)}
}

func (a *ACR) tags(ctx context.Context, w http.ResponseWriter, r *http.Request, name string) error {
	tags, err := a.reg.TagInfos(ctx, name)
	if err != nil {
		return err
	}
	items := make([]pageItem, len(tags))
	for i, t := range tags {
		items[i] = pageItem{key: t.Name, at: t.Updated, v: tagJSON(t)}
	}
	page, err := paginate(w, r, items)
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]any{"registry": r.Host, "imageName": name, "tags": page})
}

func (a *ACR) tag(ctx context.Context, w http.ResponseWriter, r *http.Request, name, tag string) error {
	switch r.Method {
	case http.MethodDelete:
		if _, err := a.reg.Untag(ctx, name, tag, false); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	case http.MethodPatch:
		if err := a.patch(ctx, w, r, name, stowage.Reference{Tag: tag}); err != nil {
			return err
		}
	case http.MethodGet:
	default:
		return notFound(r)
	}
	// The list lock hides the tag from _tags only (as on ACR).
	t, err := a.reg.TagInfo(ctx, name, tag)
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]any{"registry": r.Host, "imageName": name, "tag": tagJSON(t)})
}

type acrManifest struct {
	Digest          string        `json:"digest"`
	ImageSize       int64         `json:"imageSize"`
	CreatedTime     string        `json:"createdTime"`
	LastUpdateTime  string        `json:"lastUpdateTime"`
	Architecture    string        `json:"architecture,omitempty"`
	OS              string        `json:"os,omitempty"`
	MediaType       string        `json:"mediaType"`
	ConfigMediaType string        `json:"configMediaType,omitempty"`
	Tags            []string      `json:"tags"`
	Attributes      acrAttributes `json:"changeableAttributes"`
}

func manifestJSON(m stowage.ManifestInfo) acrManifest {
	out := acrManifest{Digest: string(m.Digest), ImageSize: m.ImageSize, CreatedTime: rfc3339(m.Created),
		LastUpdateTime: rfc3339(m.LastModified), Architecture: m.Architecture, OS: m.OS, MediaType: m.MediaType,
		Tags: m.Tags, Attributes: attrs(m.Locks)}
	if !stowage.IsIndex(m.MediaType) {
		out.ConfigMediaType = m.ArtifactType
	}
	return out
}

func (a *ACR) manifests(ctx context.Context, w http.ResponseWriter, r *http.Request, name string) error {
	ms, err := a.reg.ManifestInfos(ctx, name)
	if err != nil {
		return err
	}
	items := make([]pageItem, len(ms))
	for i, m := range ms {
		items[i] = pageItem{key: string(m.Digest), at: m.LastModified, v: manifestJSON(m)}
	}
	page, err := paginate(w, r, items)
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]any{"registry": r.Host, "imageName": name, "manifests": page})
}

func (a *ACR) manifest(ctx context.Context, w http.ResponseWriter, r *http.Request, name string, d stowage.Digest) error {
	switch r.Method {
	case http.MethodDelete:
		if _, err := a.reg.DeleteImage(ctx, name, stowage.Reference{Digest: d}, false); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	case http.MethodPatch:
		if err := a.patch(ctx, w, r, name, stowage.Reference{Digest: d}); err != nil {
			return err
		}
	case http.MethodGet:
	default:
		return notFound(r)
	}
	m, err := a.reg.ManifestInfo(ctx, name, d)
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]any{"registry": r.Host, "imageName": name, "manifest": manifestJSON(m)})
}

// ---- pagination ----

// pageItem is one listed thing: its name or digest, its time, its JSON.
type pageItem struct {
	key string
	at  time.Time
	v   any
}

// cursor is the position after which the next page starts. With
// orderby=timedesc|timeasc it carries the time as well as the key, so it
// stays valid when the item it points at has just been deleted (a purge
// walks pages while deleting). It travels base64-encoded in the Link header.
type cursor struct {
	At  int64  `json:"t"`
	Key string `json:"k"`
}

func pageSize(r *http.Request) (int, error) {
	n := 100 // ACR's default page size
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			return 0, stowage.Errorf(stowage.CodePaginationInvalid, "invalid n=%q: want a positive number", s)
		}
		n = v
	}
	return n, nil
}

// paginate orders items as the request asks, returns one page and sets
// the Link header to the next.
func paginate(w http.ResponseWriter, r *http.Request, items []pageItem) ([]any, error) {
	q := r.URL.Query()
	n, err := pageSize(r)
	if err != nil {
		return nil, err
	}
	order := q.Get("orderby")
	var less func(a, b pageItem) bool
	switch order {
	case "", "none":
		order = ""
		less = func(a, b pageItem) bool { return a.key < b.key }
	case "timedesc":
		less = func(a, b pageItem) bool {
			return a.at.After(b.at) || a.at.Equal(b.at) && a.key < b.key
		}
	case "timeasc":
		less = func(a, b pageItem) bool {
			return a.at.Before(b.at) || a.at.Equal(b.at) && a.key < b.key
		}
	default:
		return nil, stowage.Errorf(stowage.CodeInvalidParameter, "orderby=%q: want timedesc, timeasc or none", order)
	}
	sort.Slice(items, func(i, j int) bool { return less(items[i], items[j]) })
	start := 0
	if last := q.Get("last"); last != "" {
		after := pageItem{key: last}
		if order != "" {
			b, err := base64.RawURLEncoding.DecodeString(last)
			var c cursor
			if err != nil || json.Unmarshal(b, &c) != nil {
				return nil, stowage.Errorf(stowage.CodePaginationInvalid, "invalid last=%q: use the value from the Link header", last)
			}
			after = pageItem{key: c.Key, at: time.Unix(0, c.At)}
		}
		start = sort.Search(len(items), func(i int) bool { return less(after, items[i]) })
	}
	page := items[start:]
	if len(page) > n {
		page = page[:n]
		next := page[n-1].key
		if order != "" {
			b, _ := json.Marshal(cursor{At: page[n-1].at.UnixNano(), Key: page[n-1].key})
			next = base64.RawURLEncoding.EncodeToString(b)
		}
		setNext(w, r, next)
	}
	out := make([]any, len(page))
	for i, it := range page {
		out[i] = it.v
	}
	return out, nil
}

func setNext(w http.ResponseWriter, r *http.Request, last string) {
	q := r.URL.Query()
	q.Set("last", last)
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, r.URL.Path, q.Encode()))
}

func writeStatus(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}
