package stowage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
)

// What a manifest says about itself (annotations, artifact type, the
// platform of its config) is image content: with encryption at rest it is
// encrypted in storage, and the metadata database, which is not encrypted,
// never holds a copy. The APIs that show it (referrers, the ACR manifest
// listing) read it from the stored manifest and config, through the
// manifest cache (content-addressed, so never stale, and in memory only).

// manifestFacts is what describe reads from a stored manifest.
type manifestFacts struct {
	ArtifactType string // the manifest's artifactType, else its config's media type (images)
	Annotations  map[string]string
	Architecture string // from an image's config, when asked for
	OS           string
}

// describe reads m's artifact type and annotations from its stored bytes,
// and with platform also the architecture and OS its config declares (""
// when it has none or the config cannot be read).
func (r *Registry) describe(ctx context.Context, m ManifestRecord, platform bool) (manifestFacts, error) {
	body, err := r.content(ctx, m.Digest, MaxManifestSize)
	if err != nil {
		return manifestFacts{}, err
	}
	pm, err := ParseManifest(m.MediaType, body)
	if err != nil {
		return manifestFacts{}, fmt.Errorf("stored manifest %s: %w", m.Digest, err)
	}
	f := manifestFacts{ArtifactType: pm.ArtifactType, Annotations: pm.Annotations}
	if platform {
		f.Architecture, f.OS = r.platformOf(ctx, pm.Config)
	}
	return f, nil
}

// describeAll describes ms, reading up to 8 manifests at once (a cold
// listing reads and decrypts every manifest and config once).
func (r *Registry) describeAll(ctx context.Context, ms []ManifestRecord, platform bool) ([]manifestFacts, []error) {
	facts, errs := make([]manifestFacts, len(ms)), make([]error, len(ms))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range ms {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			facts[i], errs[i] = r.describe(ctx, ms[i], platform)
		}()
	}
	wg.Wait()
	return facts, errs
}

// content returns the bytes of the content-addressed object d (a manifest,
// or a small config), from the manifest cache or from storage, checked
// against d. At most max bytes are read.
func (r *Registry) content(ctx context.Context, d Digest, max int64) ([]byte, error) {
	if b, ok := r.manifests.get(d); ok {
		return b, nil
	}
	rc, err := r.store.Open(ctx, BlobKey(d), 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d, err)
	}
	if d.Algorithm().FromBytes(b) != d {
		return nil, Errorf(CodeInternal, "stored object %s is corrupt; run `stowage scrub`, and restore it from a backup or another copy", d)
	}
	r.manifests.put(d, b)
	return b, nil
}

// platformOf reads the architecture and OS an image's config declares
// (for listings); anything else, or an unreadable config, gives "".
func (r *Registry) platformOf(ctx context.Context, config *Descriptor) (arch, os string) {
	if config == nil || config.Size > 1<<20 || !strings.Contains(config.MediaType, "config") ||
		!(strings.HasPrefix(config.MediaType, "application/vnd.oci.image.") || strings.HasPrefix(config.MediaType, "application/vnd.docker.container.")) {
		return "", ""
	}
	b, err := r.content(ctx, config.Digest, 1<<20)
	if err != nil {
		return "", ""
	}
	var c struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
	}
	if json.Unmarshal(b, &c) != nil {
		return "", ""
	}
	return c.Architecture, c.OS
}
