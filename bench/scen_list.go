package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Listing scenarios: many tags in one repository, many repositories in
// one registry, and how long a client takes to read the full lists.

const (
	tagConc   = 8
	setupConc = 16
	pageSize  = 1000
	maxPages  = 100_000 // bounds a listing even if a registry loops on Link
)

// forEach runs fn(i) for i in [0,n) from conc workers.
func forEach(ctx context.Context, conc, n int, fn func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	return runWorkers(ctx, conc, func(ctx context.Context, _ int) error {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return nil
			}
			if err := fn(ctx, i); err != nil {
				return err
			}
		}
	})
}

func tagName(i int) string { return fmt.Sprintf("t%06d", i) }

// pushTags puts the same manifest under cfg.tags tags and returns tags/s.
func (b *bench) pushTags(ctx context.Context) (float64, error) {
	repo := b.repo("tags")
	img := newImage(b.src, b.cfg.prefix+"-tags", 1, 1024)
	for _, bl := range img.blobs() {
		if err := b.c.pushMono(ctx, repo, bl); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	err := forEach(ctx, tagConc, b.cfg.tags, func(ctx context.Context, i int) error {
		return b.c.putManifest(ctx, repo, tagName(i), img.manifest)
	})
	if err != nil {
		return 0, err
	}
	b.st.tagsDone = true
	return float64(b.cfg.tags) / time.Since(start).Seconds(), nil
}

func (b *bench) tagPush(ctx context.Context) error {
	tps, err := b.pushTags(ctx)
	if err != nil {
		return err
	}
	b.res.add("tag_push_tps", tps, "tags/s")
	return nil
}

// fetchPages GETs a paginated list (tags or catalog), following
// Link rel="next" to the end, and returns the raw page bodies. Decoding
// is left for later, off the clock: pagination needs only the Link header,
// and JSON decoding is client CPU that would blur the registry's time.
func (b *bench) fetchPages(ctx context.Context, first string) ([][]byte, error) {
	var pages [][]byte
	next := first
	for page := 0; next != ""; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("listing %s: more than %d pages, giving up", first, maxPages)
		}
		resp, err := b.c.do(ctx, http.MethodGet, next, nil, nil, http.StatusOK)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("GET %s: reading body: %w", next, err)
		}
		pages = append(pages, body)
		next = nextLink(resp.Header)
	}
	return pages, nil
}

// decodePages returns the entries of field ("tags", "repositories") of
// every page.
func decodePages(pages [][]byte, field string) ([]string, error) {
	var all []string
	for i, p := range pages {
		var body map[string]json.RawMessage
		if err := json.Unmarshal(p, &body); err != nil {
			return nil, fmt.Errorf("page %d: decoding JSON: %w", i+1, err)
		}
		var entries []string
		if raw, ok := body[field]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &entries); err != nil {
				return nil, fmt.Errorf("page %d: field %q: %w", i+1, field, err)
			}
		}
		if len(entries) == 0 && i < len(pages)-1 {
			return nil, fmt.Errorf("page %d is empty but has a Link to a next page", i+1)
		}
		all = append(all, entries...)
	}
	return all, nil
}

// timeListings fetches the full list starting at first cfg.listings
// times, checks each result with check, and records the median wall
// time in ms.
func (b *bench) timeListings(ctx context.Context, metric, first, field string, check func([]string) error) error {
	var ms []float64
	for range b.cfg.listings {
		t0 := time.Now()
		pages, err := b.fetchPages(ctx, first)
		if err != nil {
			return err
		}
		ms = append(ms, float64(time.Since(t0))/float64(time.Millisecond))
		entries, err := decodePages(pages, field)
		if err != nil {
			return fmt.Errorf("listing %s: %w", first, err)
		}
		if err := check(entries); err != nil {
			return err
		}
	}
	b.res.add(metric, median(ms), "ms")
	return nil
}

func (b *bench) tagList(ctx context.Context) error {
	if !b.st.tagsDone {
		fmt.Fprintf(os.Stderr, "  (setup: pushing %d tags)\n", b.cfg.tags)
		if _, err := b.pushTags(ctx); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	check := func(tags []string) error {
		if len(tags) != b.cfg.tags {
			return fmt.Errorf("tag list: got %d tags, want %d", len(tags), b.cfg.tags)
		}
		return nil
	}
	// Two ways a client lists: without n, as skopeo list-tags and most
	// tools do (the registry may still paginate on its own: Link is
	// followed), and in pages of n=1000. The first is tag_list_ms.
	base := "/v2/" + b.repo("tags") + "/tags/list"
	for _, l := range []struct{ metric, first string }{
		{"tag_list_ms", base},
		{"tag_list_n1000_ms", fmt.Sprintf("%s?n=%d", base, pageSize)},
	} {
		if err := b.timeListings(ctx, l.metric, l.first, "tags", check); err != nil {
			return err
		}
	}
	return nil
}

// catalog creates cfg.repos repositories holding the same tiny image
// (setup, not measured), then times full /v2/_catalog listings.
func (b *bench) catalog(ctx context.Context) error {
	img := newImage(b.src, b.cfg.prefix+"-cat", 1, 512)
	t0 := time.Now()
	err := forEach(ctx, setupConc, b.cfg.repos, func(ctx context.Context, i int) error {
		repo := b.repo(fmt.Sprintf("cat/r%05d", i))
		for _, bl := range img.blobs() {
			if err := b.c.pushMono(ctx, repo, bl); err != nil {
				return err
			}
		}
		return b.c.putManifest(ctx, repo, "latest", img.manifest)
	})
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	fmt.Fprintf(os.Stderr, "  (setup: %d repositories in %.1fs)\n", b.cfg.repos, time.Since(t0).Seconds())
	first := fmt.Sprintf("/v2/_catalog?n=%d", pageSize)
	ours := b.repo("cat/")
	return b.timeListings(ctx, "catalog_ms", first, "repositories",
		func(repos []string) error {
			n := 0
			for _, r := range repos {
				if strings.HasPrefix(r, ours) {
					n++
				}
			}
			if n != b.cfg.repos {
				return fmt.Errorf("catalog: %d of %d entries under %s, want %d", n, len(repos), ours, b.cfg.repos)
			}
			return nil
		})
}
