package stowage_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage"
)

// wantError fails unless err is a *stowage.Error with code and a message
// that mentions every string in mention.
func wantError(t *testing.T, what string, err error, code stowage.ErrorCode, mention ...string) {
	t.Helper()
	var se *stowage.Error
	if !errors.As(err, &se) || se.Code != code {
		t.Errorf("%s: err = %v, want %s", what, err, code)
		return
	}
	for _, m := range mention {
		if !strings.Contains(se.Message, m) {
			t.Errorf("%s: message %q does not mention %q", what, se.Message, m)
		}
	}
}

// pullable fails unless the tag resolves and every blob in bs can be read
// in full from repo.
func (e *env) pullable(t *testing.T, repo, tag string, bs ...blob) {
	t.Helper()
	if _, _, err := e.reg.GetManifest(e.ctx, repo, stowage.Reference{Tag: tag}); err != nil {
		t.Errorf("pull %s:%s: %v", repo, tag, err)
	}
	for _, b := range bs {
		rc, _, err := e.reg.OpenBlob(e.ctx, repo, b.d, 0)
		if err != nil {
			t.Errorf("pull blob %s from %s: %v", b.d, repo, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, b.data) {
			t.Errorf("blob %s from %s: read %d bytes, err %v; want its %d bytes", b.d, repo, len(got), err, len(b.data))
		}
	}
}

// imageWith returns a manifest of config and the given layer descriptors.
func imageWith(config blob, layers ...string) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		config.d, len(config.data), strings.Join(layers, ",")))
}

func layerDesc(mediaType string, b blob, size int, urls bool) string {
	u := ""
	if urls {
		u = `,"urls":["https://mcr.microsoft.com/v2/windows/servercore/blobs/` + string(b.d) + `"]`
	}
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d%s}`, mediaType, b.d, size, u)
}

// A non-distributable (foreign) layer that the client pushed is a reference
// like any other: garbage collection keeps it while a tag points at the
// image. Air-gapped registries push Windows base layers on purpose.
func TestPushedForeignLayerIsKept(t *testing.T) {
	for _, mt := range []string{mtForeign, mtNonDist, "application/vnd.oci.image.layer.nondistributable.v1.tar"} {
		t.Run(mt, func(t *testing.T) {
			e := newEnv(t, nil)
			config, foreign, plain := newBlob(50), newBlob(3000), newBlob(2000)
			for _, b := range []blob{config, foreign, plain} {
				e.push(t, "win/app", b)
			}
			body := imageWith(config, layerDesc(mt, foreign, 3000, true), layerDesc(mtOCILayer, plain, 2000, false))
			if _, err := e.reg.PutManifest(e.ctx, "win/app", stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, body, nil); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(3 * time.Hour) // grace and lease (1h) long over
			gc, err := collect(e.ctx, e.reg, gcOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if gc.BlobsDeleted != 0 {
				t.Errorf("GC deleted %d blobs of a tagged image, want 0", gc.BlobsDeleted)
			}
			e.pullable(t, "win/app", "v1", config, foreign, plain)
		})
	}
}

// Only a non-distributable layer the repository lacks, and that says where
// to fetch it (urls), may be left out; media types are matched exactly.
func TestAbsentForeignLayer(t *testing.T) {
	cases := []struct {
		name string
		desc func(b blob) string
		ok   bool
	}{
		{"docker foreign layer with urls", func(b blob) string { return layerDesc(mtForeign, b, 3000, true) }, true},
		{"oci nondistributable layer with urls", func(b blob) string { return layerDesc(mtNonDist, b, 3000, true) }, true},
		{"foreign layer without urls", func(b blob) string { return layerDesc(mtForeign, b, 3000, false) }, false},
		{"a type that merely contains 'foreign'", func(b blob) string { return layerDesc("application/vnd.example.foreign.layer", b, 3000, true) }, false},
		{"a type that merely contains 'nondistributable'", func(b blob) string {
			return layerDesc("application/vnd.example.nondistributable+tar", b, 3000, true)
		}, false},
		{"an ordinary layer", func(b blob) string { return layerDesc(mtOCILayer, b, 3000, true) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			config, absent := newBlob(50), newBlob(3000)
			e.push(t, "win/app", config)
			body := imageWith(config, c.desc(absent))
			_, err := e.reg.PutManifest(e.ctx, "win/app", stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, body, nil)
			if c.ok {
				if err != nil {
					t.Fatalf("push: %v, want success (the layer is fetched from its urls)", err)
				}
				e.pullable(t, "win/app", "v1", config)
				// Pushed later, the layer becomes a reference when the
				// manifest is pushed again, and is then kept.
				e.push(t, "win/app", absent)
				if _, err := e.reg.PutManifest(e.ctx, "win/app", stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, body, nil); err != nil {
					t.Fatal(err)
				}
				e.clock.Advance(3 * time.Hour)
				if _, err := collect(e.ctx, e.reg, gcOptions{}); err != nil {
					t.Fatal(err)
				}
				e.pullable(t, "win/app", "v1", config, absent)
				return
			}
			wantError(t, "push", err, stowage.CodeManifestBlobUnknown, string(absent.d))
		})
	}
}

// DELETE of a blob that a manifest of the repository uses is refused (the
// image would no longer pull); once the manifest is gone it is allowed. A
// link in another repository is independent.
func TestDeleteBlobInUse(t *testing.T) {
	e := newEnv(t, nil)
	config, layer, junk := newBlob(10), newBlob(1000), newBlob(20)
	img := e.image(t, "app", "v1", config, layer)
	e.push(t, "app", junk)
	e.push(t, "other", layer)
	for _, b := range []blob{layer, config} {
		err := e.reg.DeleteBlob(e.ctx, "app", b.d)
		wantError(t, "delete a blob in use", err, stowage.CodeDenied, string(b.d), "app@"+string(img.d))
	}
	e.pullable(t, "app", "v1", config, layer)
	if err := e.reg.DeleteBlob(e.ctx, "app", junk.d); err != nil {
		t.Errorf("delete a blob no manifest uses: %v", err)
	}
	if err := e.reg.DeleteBlob(e.ctx, "other", layer.d); err != nil {
		t.Errorf("delete the link in a repository whose manifests do not use it: %v", err)
	}
	e.pullable(t, "app", "v1", config, layer)
	if _, err := e.reg.DeleteImage(e.ctx, "app", stowage.Reference{Digest: img.d}, false); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.DeleteBlob(e.ctx, "app", layer.d); err != nil {
		t.Errorf("delete the layer after its manifest: %v", err)
	}
}

// A descriptor's size must be the stored blob's (or manifest's): a client
// could not pull an image whose descriptors lie about sizes.
func TestManifestDescriptorSizes(t *testing.T) {
	e := newEnv(t, nil)
	config, l1, l2 := newBlob(40), newBlob(1000), newBlob(2000)
	for _, b := range []blob{config, l1, l2} {
		e.push(t, "app", b)
	}
	child := e.image(t, "app", "child", config, l1)
	absentSubject := newBlob(77)
	index := func(childSize int, subject string) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]%s}`,
			stowage.MediaTypeOCIIndex, stowage.MediaTypeOCIManifest, child.d, childSize, subject))
	}
	subject := func(b blob, size int) string {
		return fmt.Sprintf(`,"subject":{"mediaType":%q,"digest":%q,"size":%d}`, stowage.MediaTypeOCIManifest, b.d, size)
	}
	withConfigSize := func(n int) []byte {
		c := config
		c.data = make([]byte, n)
		return imageWith(c, layerDesc(mtOCILayer, l1, 1000, false))
	}
	cases := []struct {
		name    string
		ct      string
		body    []byte
		mention []string // nil: accepted
	}{
		{"right sizes", stowage.MediaTypeOCIManifest,
			imageWith(config, layerDesc(mtOCILayer, l1, 1000, false), layerDesc(mtOCILayer, l2, 2000, false)), nil},
		{"config too small", stowage.MediaTypeOCIManifest, withConfigSize(39), []string{"config", string(config.d), "39", "40"}},
		{"layer 2 too large", stowage.MediaTypeOCIManifest,
			imageWith(config, layerDesc(mtOCILayer, l1, 1000, false), layerDesc(mtOCILayer, l2, 2001, false)),
			[]string{"layer 2", string(l2.d), "2001", "2000"}},
		{"pushed foreign layer with a wrong size", stowage.MediaTypeOCIManifest,
			imageWith(config, layerDesc(mtForeign, l1, 999, true)), []string{"layer 1", string(l1.d), "999", "1000"}},
		{"index child with its size", stowage.MediaTypeOCIIndex, index(len(child.data), ""), nil},
		{"index child with a wrong size", stowage.MediaTypeOCIIndex, index(len(child.data)+1, ""),
			[]string{"manifest 1", string(child.d), fmt.Sprint(len(child.data) + 1), fmt.Sprint(len(child.data))}},
		{"subject held, right size", stowage.MediaTypeOCIIndex, index(len(child.data), subject(child, len(child.data))), nil},
		{"subject held, wrong size", stowage.MediaTypeOCIIndex, index(len(child.data), subject(child, 5)),
			[]string{"subject", string(child.d), "5", fmt.Sprint(len(child.data))}},
		{"subject absent: not checked", stowage.MediaTypeOCIIndex, index(len(child.data), subject(absentSubject, 5)), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Tag: "t"}, c.ct, c.body, nil)
			if c.mention == nil {
				if err != nil {
					t.Errorf("push: %v, want success", err)
				}
				return
			}
			wantError(t, "push", err, stowage.CodeManifestInvalid, c.mention...)
		})
	}
}

// A mount from a read-locked repository, or from one that does not hold
// the blob, makes nothing visible: the caller falls back to an upload.
func TestMountHonoursSourceReadLock(t *testing.T) {
	e := newEnv(t, nil)
	secret := newBlob(500)
	e.push(t, "locked", secret)
	if _, err := e.reg.SetLocks(e.ctx, "locked", stowage.Reference{}, stowage.LockRead, 0); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"locked", "nowhere"} {
		_, ok, err := e.reg.MountBlob(e.ctx, "thief", from, secret.d)
		if err != nil || ok {
			t.Errorf("mount from %s: mounted=%v err=%v, want false and no error (a plain upload follows)", from, ok, err)
		}
		_, err = e.reg.StatBlob(e.ctx, "thief", secret.d)
		wantError(t, "blob after a refused mount from "+from, err, stowage.CodeBlobUnknown)
	}
	if _, err := e.reg.SetLocks(e.ctx, "locked", stowage.Reference{}, 0, stowage.LockRead); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := e.reg.MountBlob(e.ctx, "thief", "locked", secret.d); err != nil || !ok {
		t.Errorf("mount after the lock was lifted: mounted=%v err=%v, want true", ok, err)
	}
}

// A manifest the repository already holds costs nothing: re-tagging it
// with the quota exactly at usage succeeds; a new manifest is refused.
func TestRetagAtQuota(t *testing.T) {
	e := newEnv(t, nil)
	img := e.image(t, "app", "v1", newBlob(10), newBlob(1000))
	q, err := e.reg.Quotas(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.SetQuota(e.ctx, "app", 1); err != nil {
		t.Fatal(err)
	}
	if q, err = e.reg.Quotas(e.ctx); err != nil || len(q.Repositories) != 1 {
		t.Fatalf("quotas: %+v, %v", q, err)
	}
	used := q.Repositories[0].UsedBytes
	if want := int64(10 + 1000 + len(img.data)); used != want {
		t.Fatalf("repository holds %d bytes, want %d", used, want)
	}
	if err := e.reg.SetQuota(e.ctx, "app", used); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []stowage.Reference{{Tag: "v1-again"}, {Tag: "v1"}, {Digest: img.d}} {
		if _, err := e.reg.PutManifest(e.ctx, "app", ref, stowage.MediaTypeOCIManifest, img.data, []string{"extra"}); err != nil {
			t.Errorf("push the manifest the repository holds as %s: %v", ref, err)
		}
	}
	other := []byte(strings.Replace(string(img.data), `"schemaVersion":2`, `"schemaVersion":2,"annotations":{"a":"b"}`, 1))
	_, err = e.reg.PutManifest(e.ctx, "app", stowage.Reference{Tag: "v2"}, stowage.MediaTypeOCIManifest, other, nil)
	wantError(t, "a new manifest past the quota", err, stowage.CodeDenied, "quota")
}

// Writes accept the digest algorithms the OCI image spec registers, sha256
// and sha512, and refuse others (sha384) with a message naming those.
func TestDigestAlgorithms(t *testing.T) {
	e := newEnv(t, nil)
	data := []byte("some bytes")
	s512 := sha512.Sum512(data)
	s384 := sha512.Sum384(data)
	d512 := stowage.Digest("sha512:" + hex.EncodeToString(s512[:]))
	d384 := stowage.Digest("sha384:" + hex.EncodeToString(s384[:]))
	if _, err := e.reg.PutBlob(e.ctx, "r", d512, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Errorf("push a sha512 blob: %v", err)
	}
	_, err := e.reg.PutBlob(e.ctx, "r", d384, bytes.NewReader(data), int64(len(data)))
	wantError(t, "push a sha384 blob", err, stowage.CodeDigestInvalid, "sha384", "sha256 or sha512")
	u, err := e.reg.StartUpload(e.ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.reg.FinishUpload(e.ctx, "r", u.ID, d384, 0, int64(len(data)), bytes.NewReader(data))
	wantError(t, "finish an upload as sha384", err, stowage.CodeDigestInvalid, "sha256 or sha512")
	config := newBlob(10)
	e.push(t, "r", config)
	body := imageWith(config)
	h := sha512.Sum384(body)
	_, err = e.reg.PutManifest(e.ctx, "r", stowage.Reference{Digest: stowage.Digest("sha384:" + hex.EncodeToString(h[:]))}, stowage.MediaTypeOCIManifest, body, nil)
	wantError(t, "push a manifest by a sha384 digest", err, stowage.CodeDigestInvalid, "sha256 or sha512")
}

// Concurrent pushes of new manifests cannot pass a repository quota
// together: the transaction that records a manifest charges it. Rounds make
// the interleaving (both reserve, then both record) likely.
func TestManifestQuotaUnderConcurrency(t *testing.T) {
	const rounds, pushers = 20, 12
	for round := range rounds {
		e := newEnv(t, nil)
		config := newBlob(10)
		e.push(t, "app", config)
		manifests := make([][]byte, pushers)
		for i := range manifests {
			manifests[i] = []byte(strings.Replace(string(imageWith(config)), `"schemaVersion":2`, fmt.Sprintf(`"schemaVersion":2,"annotations":{"n":"%04d"}`, i), 1))
		}
		if err := e.reg.SetQuota(e.ctx, "app", int64(len(config.data)+2*len(manifests[0]))); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for i := range pushers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Tag: fmt.Sprint("t", i)}, stowage.MediaTypeOCIManifest, manifests[i], nil)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case stowage.ErrorCodeOf(err) != stowage.CodeDenied:
					t.Errorf("push: %v", err)
				}
			}()
		}
		wg.Wait()
		if ok != 2 {
			t.Fatalf("round %d: %d manifests stored under a quota with room for 2", round, ok)
		}
	}
}

// A blob delete racing a manifest push that uses the blob: either the push
// wins (and the delete is refused) or the delete wins (and the push fails
// with MANIFEST_BLOB_UNKNOWN); never a stored manifest without its layer.
func TestDeleteBlobRacesManifestPush(t *testing.T) {
	e := newEnv(t, nil)
	for round := range 30 {
		repo := fmt.Sprint("race/r", round)
		config, layer := newBlob(10), newBlob(300)
		e.push(t, repo, config)
		e.push(t, repo, layer)
		var delErr, putErr error
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			delErr = e.reg.DeleteBlob(e.ctx, repo, layer.d)
		}()
		go func() {
			defer wg.Done()
			_, putErr = e.reg.PutManifest(e.ctx, repo, stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, manifestOf(config, layer), nil)
		}()
		wg.Wait()
		switch {
		case putErr == nil && stowage.ErrorCodeOf(delErr) == stowage.CodeDenied:
			e.pullable(t, repo, "v1", config, layer)
		case delErr == nil && stowage.ErrorCodeOf(putErr) == stowage.CodeManifestBlobUnknown:
		default:
			t.Fatalf("round %d: delete: %v; push: %v; want exactly one to win", round, delErr, putErr)
		}
	}
}

// A mount without from (automatic content discovery) uses a blob only if
// some repository that is not read-locked holds it: a blob held only by
// read-locked repositories, or by none (deleted from each, or its
// repository deleted, before garbage collection ran), makes nothing
// visible, and the caller falls back to an upload.
func TestMountWithoutFrom(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, e *env, b blob) error
		ok    bool
	}{
		{"held by an open repository", func(t *testing.T, e *env, b blob) error { e.push(t, "open", b); return nil }, true},
		{"held only by a read-locked repository", func(t *testing.T, e *env, b blob) error {
			e.push(t, "locked", b)
			_, err := e.reg.SetLocks(e.ctx, "locked", stowage.Reference{}, stowage.LockRead, 0)
			return err
		}, false},
		{"held by a read-locked and an open repository", func(t *testing.T, e *env, b blob) error {
			e.push(t, "locked", b)
			e.push(t, "open", b)
			_, err := e.reg.SetLocks(e.ctx, "locked", stowage.Reference{}, stowage.LockRead, 0)
			return err
		}, true},
		{"deleted from its only repository", func(t *testing.T, e *env, b blob) error {
			e.push(t, "gone", b)
			return e.reg.DeleteBlob(e.ctx, "gone", b.d)
		}, false},
		{"its only repository deleted", func(t *testing.T, e *env, b blob) error {
			e.push(t, "gone", b)
			_, err := e.reg.DeleteRepository(e.ctx, "gone", false)
			return err
		}, false},
		{"never pushed", func(t *testing.T, e *env, b blob) error { return nil }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			b := newBlob(700)
			if err := c.setup(t, e, b); err != nil {
				t.Fatal(err)
			}
			_, ok, err := e.reg.MountBlob(e.ctx, "dest", "", b.d)
			if err != nil || ok != c.ok {
				t.Fatalf("mount without from: mounted=%v err=%v, want %v and no error", ok, err, c.ok)
			}
			if c.ok {
				e.pullableBlob(t, "dest", b)
				return
			}
			_, err = e.reg.StatBlob(e.ctx, "dest", b.d)
			wantError(t, "blob after a refused mount", err, stowage.CodeBlobUnknown)
			// The fall-back upload works.
			e.push(t, "dest", b)
			e.pullableBlob(t, "dest", b)
		})
	}
}

// pullableBlob fails unless b can be read in full from repo.
func (e *env) pullableBlob(t *testing.T, repo string, b blob) {
	t.Helper()
	rc, _, err := e.reg.OpenBlob(e.ctx, repo, b.d, 0)
	if err != nil {
		t.Fatalf("pull blob %s from %s: %v", b.d, repo, err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, b.data) {
		t.Errorf("blob %s from %s: read %d bytes, err %v; want its %d bytes", b.d, repo, len(got), err, len(b.data))
	}
}

// An index child's descriptor must state the media type the child was
// stored with (clients parse what they fetch by the descriptor's type).
// Lists of one format listing manifests of the other are fine.
func TestIndexChildMediaType(t *testing.T) {
	e := newEnv(t, nil)
	config, layer := newBlob(40), newBlob(1000)
	e.push(t, "app", config)
	e.push(t, "app", layer)
	put := func(ct string, body []byte) blob {
		t.Helper()
		res, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Digest: stowage.Digest("sha256:" + sha(body))}, ct, body, nil)
		if err != nil {
			t.Fatalf("push %s: %v", ct, err)
		}
		return blob{res.Digest, body}
	}
	oci := put(stowage.MediaTypeOCIManifest, imageWith(config, layerDesc(mtOCILayer, layer, 1000, false)))
	docker := put(stowage.MediaTypeDockerManifest, []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":%q,"size":40},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":%q,"size":1000}]}`,
		stowage.MediaTypeDockerManifest, config.d, layer.d)))
	inner := put(stowage.MediaTypeOCIIndex, []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
		stowage.MediaTypeOCIIndex, stowage.MediaTypeOCIManifest, oci.d, len(oci.data))))
	list := func(listType, childType string, child blob) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}`,
			listType, childType, child.d, len(child.data)))
	}
	const ociM, ociI, dockerM, dockerL = stowage.MediaTypeOCIManifest, stowage.MediaTypeOCIIndex, stowage.MediaTypeDockerManifest, stowage.MediaTypeDockerList
	cases := []struct {
		name            string
		listType        string
		childType       string
		child           blob
		storedMediaType string // "": accepted
	}{
		{"OCI index of an OCI manifest", ociI, ociM, oci, ""},
		{"OCI index of a Docker manifest", ociI, dockerM, docker, ""},
		{"Docker list of a Docker manifest", dockerL, dockerM, docker, ""},
		{"Docker list of an OCI manifest", dockerL, ociM, oci, ""},
		{"OCI index of an OCI index", ociI, ociI, inner, ""},
		{"OCI manifest described as Docker", ociI, dockerM, oci, ociM},
		{"Docker manifest described as OCI", dockerL, ociM, docker, dockerM},
		{"OCI index described as an OCI manifest", ociI, ociM, inner, ociI},
		{"OCI manifest described as an index", ociI, ociI, oci, ociM},
		{"OCI manifest described with another type", ociI, "application/vnd.example.manifest+json", oci, ociM},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.reg.PutManifest(e.ctx, "app", stowage.Reference{Tag: "multi"}, c.listType, list(c.listType, c.childType, c.child), nil)
			if c.storedMediaType == "" {
				if err != nil {
					t.Errorf("push: %v, want success", err)
				}
				return
			}
			wantError(t, "push", err, stowage.CodeManifestInvalid, "manifest 1 (manifests[0])", string(c.child.d),
				fmt.Sprintf("%q", c.childType), fmt.Sprintf("%q", c.storedMediaType))
		})
	}
}

// Only a layer may be absent for having urls: a config (or any other
// descriptor) that claims a non-distributable type is still required, or
// no client could pull the image.
func TestAbsentForeignConfig(t *testing.T) {
	e := newEnv(t, nil)
	config, layer := newBlob(50), newBlob(300)
	e.push(t, "win/app", layer)
	body := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}`,
		layerDesc(mtNonDist, config, 50, true), layerDesc(mtOCILayer, layer, 300, false)))
	_, err := e.reg.PutManifest(e.ctx, "win/app", stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, body, nil)
	wantError(t, "push", err, stowage.CodeManifestBlobUnknown, string(config.d))
}

// An immutable tag cannot be moved by removing it first: untag, delete by
// tag and delete by digest are refused; policies pass over it; deleting
// the whole repository is allowed.
func TestImmutableTagCannotBeRemoved(t *testing.T) {
	e := newEnv(t, nil)
	config, other := newBlob(50), newBlob(60)
	e.push(t, "prod/app", config)
	e.push(t, "prod/app", other)
	v1 := imageWith(config)
	d1, err := e.reg.PutManifest(e.ctx, "prod/app", stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, v1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.reg.SetImmutabilityRules(e.ctx, []string{"prod/.*:v.*"}); err != nil {
		t.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		_, err = e.reg.Untag(e.ctx, "prod/app", "v1", dry)
		wantError(t, "untag", err, stowage.CodeDenied, "immutable")
		_, err = e.reg.DeleteImage(e.ctx, "prod/app", stowage.Reference{Tag: "v1"}, dry)
		wantError(t, "delete by tag", err, stowage.CodeDenied, "immutable")
		_, err = e.reg.DeleteImage(e.ctx, "prod/app", stowage.Reference{Digest: d1.Digest}, dry)
		wantError(t, "delete by digest", err, stowage.CodeDenied, "immutable")
	}
	_, err = e.reg.PutManifest(e.ctx, "prod/app", stowage.Reference{Tag: "v1"}, stowage.MediaTypeOCIManifest, imageWith(other), nil)
	wantError(t, "move", err, stowage.CodeDenied, "immutable")
	e.pullable(t, "prod/app", "v1", config)
	if _, err := e.reg.DeleteRepository(e.ctx, "prod/app", false); err != nil {
		t.Fatalf("delete-repo: %v, want it allowed", err)
	}
}
