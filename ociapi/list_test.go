package ociapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
	"github.com/stowage/stowage/meta/sqlite"
	"github.com/stowage/stowage/ociapi"
	"github.com/stowage/stowage/storage/mem"
)

// failingDB fails every ListTags after the first `after` ones, when armed.
type failingDB struct {
	stowage.DB
	armed atomic.Bool
	calls atomic.Int64
	after int64
}

func (f *failingDB) View(ctx context.Context, fn func(stowage.Tx) error) error {
	return f.DB.View(ctx, func(tx stowage.Tx) error { return fn(&failingTx{tx, f}) })
}

type failingTx struct {
	stowage.Tx
	f *failingDB
}

func (t *failingTx) Tags() stowage.TagTx { return failingTags{t.Tx.Tags(), t.f} }

type failingTags struct {
	stowage.TagTx
	f *failingDB
}

func (t failingTags) ListTags(repo, after string, limit int) ([]string, error) {
	if t.f.armed.Load() && t.f.calls.Add(1) > t.f.after {
		return nil, errors.New("database went away")
	}
	return t.TagTx.ListTags(repo, after, limit)
}

// TestLargeListsStreamed: lists without n (20,000 tags, 2,500 repositories,
// 2,500 referrers) are written as they are read, page by page: the same JSON
// as before, sent without a Content-Length (they were built whole in memory
// first); with n, pages and Link headers as before (n capped at 10,000). A
// database error in the middle of a streamed list cuts the response off,
// so a client never takes part of a list for all of it.
func TestLargeListsStreamed(t *testing.T) {
	const nTags, nRepos, nRefs = 20_000, 2_500, 2_500
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	subject := stowage.Digest(fmt.Sprintf("sha256:%064x", 1<<40))
	var tags, repos []string
	var refs []stowage.Descriptor
	store := mem.New()
	err = db.Update(ctx, func(tx stowage.Tx) error {
		for i := range nRepos {
			name := fmt.Sprintf("a/%05d", i)
			repos = append(repos, name)
			if err := tx.Repositories().CreateRepository(name, now); err != nil {
				return err
			}
		}
		repos = append(repos, "big")
		if err := tx.Repositories().CreateRepository("big", now); err != nil {
			return err
		}
		for i := range nTags {
			tags = append(tags, fmt.Sprintf("v%05d", i))
			if err := tx.Tags().PutTag("big", tags[i], subject, now); err != nil {
				return err
			}
		}
		// Referrers are described from their stored manifests (the database
		// keeps no annotations), so each one is stored too.
		for i := range nRefs {
			body := referrerManifest(subject, "application/example", map[string]string{"n": fmt.Sprint(i), "html": "<&>"})
			m := stowage.ManifestRecord{Repo: "big", Digest: digest.FromBytes(body), MediaType: stowage.MediaTypeOCIManifest,
				Size: int64(len(body)), Subject: subject, Created: now}
			if err := store.Put(ctx, stowage.BlobKey(m.Digest), bytes.NewReader(body), m.Size); err != nil {
				return err
			}
			if err := tx.Manifests().PutManifest(m, nil); err != nil {
				return err
			}
			refs = append(refs, stowage.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size, ArtifactType: "application/example",
				Annotations: map[string]string{"n": fmt.Sprint(i), "html": "<&>"}})
		}
		slices.SortFunc(refs, func(a, b stowage.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(db stowage.DB) *httptest.Server {
		srv := httptest.NewServer(ociapi.New(stowage.NewRegistry(db, store, stowage.Options{}), nil))
		t.Cleanup(srv.Close)
		return srv
	}
	srv := serve(db)

	marshal := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	tagsJSON := func(ts []string) string {
		return marshal(struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}{"big", ts})
	}
	index, _ := stowage.Index(refs)
	link := func(path string, n int, last string) string {
		return fmt.Sprintf(`<%s?last=%s&n=%d>; rel="next"`, path, strings.ReplaceAll(last, "/", "%2F"), n)
	}
	for _, tc := range []struct {
		name     string
		url      string
		want     string
		link     string
		streamed bool
	}{
		{"all tags", "/v2/big/tags/list", tagsJSON(tags), "", true},
		{"tags after one", "/v2/big/tags/list?last=v00009", tagsJSON(tags[10:]), "", true},
		{"a page of tags", "/v2/big/tags/list?n=5000&last=v04999", tagsJSON(tags[5000:10000]), link("/v2/big/tags/list", 5000, "v09999"), true},
		{"last page of tags", "/v2/big/tags/list?n=5000&last=v14999", tagsJSON(tags[15000:]), "", true},
		{"n over the cap", "/v2/big/tags/list?n=50000", tagsJSON(tags[:10000]), link("/v2/big/tags/list", 10000, "v09999"), true},
		{"catalog", "/v2/_catalog", marshal(map[string][]string{"repositories": repos}), "", true},
		{"a page of the catalog", "/v2/_catalog?n=2", marshal(map[string][]string{"repositories": repos[:2]}), link("/v2/_catalog", 2, repos[1]), false},
		{"referrers", "/v2/big/referrers/" + string(subject), string(index), "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, %v: %s", resp.StatusCode, err, trunc(string(body)))
			}
			if string(body) != tc.want {
				t.Errorf("body %d bytes %s, want %d bytes %s", len(body), trunc(string(body)), len(tc.want), trunc(tc.want))
			}
			if got := resp.Header.Get("Link"); got != tc.link {
				t.Errorf("Link %q, want %q", got, tc.link)
			}
			if tc.streamed && resp.ContentLength != -1 {
				t.Errorf("Content-Length %d: the list was built whole before it was sent", resp.ContentLength)
			}
		})
	}

	for _, tc := range []struct {
		name  string
		after int64 // pages read before the database fails
		cut   bool  // the failure comes after the first bytes were sent
	}{
		{"error on the second page", 1, false}, // still buffered: an OCI error
		{"error on the eighth page", 7, true},  // 63 KB sent: cut off
	} {
		t.Run(tc.name, func(t *testing.T) {
			fdb := &failingDB{DB: db, after: tc.after}
			fdb.armed.Store(true)
			resp, err := http.Get(serve(fdb).URL + "/v2/big/tags/list") // a fresh registry: no cached list
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			switch {
			case tc.cut && err == nil:
				t.Errorf("a list cut by an error reads as complete: status %d, %d bytes, valid JSON %v",
					resp.StatusCode, len(body), json.Valid(body))
			case !tc.cut && (resp.StatusCode != 500 || !strings.Contains(string(body), "INTERNAL_ERROR")):
				t.Errorf("status %d %s, want 500 INTERNAL_ERROR", resp.StatusCode, trunc(string(body)))
			}
		})
	}
}

// referrerManifest is an OCI artifact manifest with subject, artifactType
// and annotations.
func referrerManifest(subject stowage.Digest, artifactType string, annotations map[string]string) []byte {
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     stowage.MediaTypeOCIManifest,
		"artifactType":  artifactType,
		"config": map[string]any{"mediaType": "application/vnd.oci.empty.v1+json",
			"digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
		"layers":      []any{},
		"subject":     map[string]any{"mediaType": stowage.MediaTypeOCIManifest, "digest": subject, "size": 100},
		"annotations": annotations,
	}
	b, _ := json.Marshal(m)
	return b
}
