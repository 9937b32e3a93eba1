package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/storage/fs"
)

// The registry the builder writes, for N manifests:
//
//	repos = N/10; repository "big" holds N/10 manifests, each with its own
//	tag (100,000 tags at 1M); the other repos-1 repositories ("r/0000001"…)
//	share the remaining 0.9·N manifests. Every manifest is distinct (an
//	annotation numbers it) and references its repository's config blob,
//	its repository's layer and one base layer every repository shares.
//	One regular manifest in nine has never been tagged and was pushed 30
//	days ago (10% of N): a retention pass of 7 days deletes them, and GC
//	then collects their manifest blobs.
//
// Rows are written through the database's own stowage.Tx, as the engine's
// PutBlob / PutManifest transactions write them (blob rows live, links,
// manifest rows with their references, tags), in transactions of a few
// thousand manifests, one transaction at a time; objects through
// storage/fs (without fsync; the scale run is not a durability test), by
// a few goroutines, each transaction's objects while the next one runs.
// Nothing is bypassed but the change feed (events), which is not written.
type layout struct {
	manifests int
	repos     int
	big       int // manifests (and tags) of "big"
}

const (
	bigRepo      = "big"
	mediaType    = "application/vnd.oci.image.manifest.v1+json"
	configType   = "application/vnd.oci.image.config.v1+json"
	layerType    = "application/vnd.oci.image.layer.v1.tar+gzip"
	baseSize     = 64 << 10
	layerSize    = 1 << 10
	untaggedEach = 9
)

func newLayout(n int) layout {
	l := layout{manifests: n, repos: max(2, n/10), big: max(1, n/10)}
	return l
}

func repoName(i int) string {
	if i == 0 {
		return bigRepo
	}
	return fmt.Sprintf("r/%07d", i)
}

// repoManifests is how many manifests repository i holds.
func (l layout) repoManifests(i int) int {
	if i == 0 {
		return l.big
	}
	rest, n := l.manifests-l.big, l.repos-1
	c := rest / n
	if i <= rest%n {
		c++
	}
	return c
}

type blobData struct {
	d    stowage.Digest
	data []byte
}

func newBlob(data []byte) blobData { return blobData{sha(data), data} }

func sha(b []byte) stowage.Digest { return stowage.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256(b))) }

func (b blobData) desc(mt string) string {
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mt, b.d, len(b.data))
}

// repoBlobs are repository i's config and layer: deterministic bytes.
func repoBlobs(i int) (cfg, layer blobData) {
	cfg = newBlob([]byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"repo":%d}`, i)))
	r := rand.New(rand.NewPCG(uint64(i), 7))
	buf := make([]byte, layerSize)
	for j := range buf {
		buf[j] = byte(r.Uint32())
	}
	return cfg, newBlob(buf)
}

func baseBlob() blobData {
	r := rand.New(rand.NewPCG(1, 1))
	buf := make([]byte, baseSize)
	for j := range buf {
		buf[j] = byte(r.Uint32())
	}
	return newBlob(buf)
}

// manifestBody is manifest j of repository i.
func manifestBody(i, j int, cfg, base, layer blobData) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s,%s],"annotations":{"n":"%d/%d"}}`,
		mediaType, cfg.desc(configType), base.desc(layerType), layer.desc(layerType), i, j))
}

// untagged says whether manifest j of regular repository i was never tagged.
func untagged(i, j int) bool { return i != 0 && (i+j)%untaggedEach == 0 }

func tagName(j int) string { return fmt.Sprintf("v%06d", j) }

// objectWriters writes objects with several goroutines while the next
// transaction runs (the objects of a transaction are written after it
// commits, as a push writes its blobs before the manifest that needs them
// only in order, not in time: nothing reads them during the build).
type objectWriters struct {
	ch   chan blobData
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	stop context.CancelFunc
}

func newObjectWriters(ctx context.Context, store *fs.Backend, workers int) *objectWriters {
	ctx, cancel := context.WithCancel(ctx)
	w := &objectWriters{ch: make(chan blobData, 8192), stop: cancel}
	for range max(1, workers) {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for b := range w.ch {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := store.Put(ctx, stowage.BlobKey(b.d), bytes.NewReader(b.data), int64(len(b.data))); err != nil {
					w.mu.Lock()
					if w.err == nil {
						w.err = err
					}
					w.mu.Unlock()
					cancel()
				}
			}
		}()
	}
	return w
}

func (w *objectWriters) put(b blobData) error {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.ch <- b
	return nil
}

// close waits for every object to be written.
func (w *objectWriters) close() error {
	close(w.ch)
	w.wg.Wait()
	w.stop()
	return w.err
}

// buildOptions tune the builder's speed (not what it writes).
type buildOptions struct {
	batch   int // manifests per transaction
	writers int // goroutines writing object files
}

// build writes the registry.
func build(ctx context.Context, db stowage.DB, store *fs.Backend, l layout, now time.Time, opt buildOptions, logf func(string, ...any)) error {
	base := baseBlob()
	old := now.Add(-30 * 24 * time.Hour)
	if err := store.Put(ctx, stowage.BlobKey(base.d), bytes.NewReader(base.data), int64(len(base.data))); err != nil {
		return err
	}
	// What the first start of an empty registry with `encryption: none`
	// records (cmd/stowage/encryption.go). Without it every start counts
	// all blobs to decide whether old data is plain.
	if err := db.Update(ctx, func(tx stowage.Tx) error {
		return tx.Settings().PutSetting("encryption", `{"encrypted":false}`, old)
	}); err != nil {
		return err
	}
	live := func(tx stowage.Tx, d stowage.Digest, size int64, t time.Time) error {
		return tx.Blobs().PutBlob(stowage.BlobRecord{Digest: d, Size: size, Created: t, State: stowage.BlobLive, LastUsed: t, UnreferencedSince: t})
	}
	batch := max(1, opt.batch)
	objs := newObjectWriters(ctx, store, opt.writers)
	start := time.Now()
	done := 0
	err := func() error {
		for i := 0; i < l.repos; {
			// One transaction: whole repositories up to ~batch manifests, or a
			// slice of "big".
			type job struct{ repo, from, to int }
			var jobs []job
			n := 0
			for i < l.repos && n < batch {
				c := l.repoManifests(i)
				if i == 0 && c > batch {
					for from := 0; from < c; from += batch {
						jobs = append(jobs, job{0, from, min(c, from+batch)})
					}
					i++
					break
				}
				jobs = append(jobs, job{i, 0, c})
				n += c
				i++
			}
			for len(jobs) > 0 {
				// "big" comes in its own transactions, a batch each.
				take := len(jobs)
				if jobs[0].repo == 0 {
					take = 1
				}
				cur := jobs[:take]
				jobs = jobs[take:]
				var bodies []blobData
				err := db.Update(ctx, func(tx stowage.Tx) error {
					bodies = bodies[:0]
					for _, jb := range cur {
						repo := repoName(jb.repo)
						cfg, layer := repoBlobs(jb.repo)
						if jb.from == 0 {
							if err := tx.Repositories().CreateRepository(repo, old); err != nil {
								return err
							}
							if err := live(tx, base.d, int64(len(base.data)), old); err != nil {
								return err
							}
							for _, b := range []blobData{base, cfg, layer} {
								if b.d != base.d {
									if err := live(tx, b.d, int64(len(b.data)), old); err != nil {
										return err
									}
								}
								if err := tx.Blobs().LinkBlob(repo, b.d, old); err != nil {
									return err
								}
							}
						}
						for j := jb.from; j < jb.to; j++ {
							body := newBlob(manifestBody(jb.repo, j, cfg, base, layer))
							d := body.d
							t := now.Add(-time.Duration(l.manifests-done-j) * time.Millisecond)
							if untagged(jb.repo, j) {
								t = old
							}
							if err := live(tx, d, int64(len(body.data)), t); err != nil {
								return err
							}
							refs := []stowage.ManifestRef{{Digest: cfg.d, Kind: stowage.RefBlob}, {Digest: base.d, Kind: stowage.RefBlob}, {Digest: layer.d, Kind: stowage.RefBlob}}
							if err := tx.Manifests().PutManifest(stowage.ManifestRecord{Repo: repo, Digest: d, MediaType: mediaType, Size: int64(len(body.data)), Created: t}, refs); err != nil {
								return err
							}
							if !untagged(jb.repo, j) {
								if err := tx.Tags().PutTag(repo, tagName(j), d, t); err != nil {
									return err
								}
							}
							bodies = append(bodies, body)
						}
					}
					return nil
				})
				if err != nil {
					return fmt.Errorf("build transaction: %w", err)
				}
				for _, jb := range cur {
					if jb.from == 0 {
						cfg, layer := repoBlobs(jb.repo)
						if err := objs.put(cfg); err != nil {
							return err
						}
						if err := objs.put(layer); err != nil {
							return err
						}
					}
				}
				for _, b := range bodies {
					if err := objs.put(b); err != nil {
						return err
					}
				}
				done += len(bodies)
				if done%100000 < len(bodies) {
					el := time.Since(start)
					logf("built %d/%d manifests (%s, %.0f/s)", done, l.manifests, el.Round(time.Second), float64(done)/el.Seconds())
				}
			}
		}
		return nil
	}()
	if cerr := objs.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	logf("built %d manifests in %d repositories in %s", done, l.repos, time.Since(start).Round(time.Second))
	return nil
}
