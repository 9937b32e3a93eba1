package stowage_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stowage/stowage"
)

const (
	mtOCIConfig   = "application/vnd.oci.image.config.v1+json"
	mtOCILayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtDockerCfg   = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtForeign     = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mtNonDist     = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	mtSchema1     = "application/vnd.docker.distribution.manifest.v1+json"
	mtSchema1Sig  = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	mtEmpty       = "application/vnd.oci.empty.v1+json"
)

var (
	dCfg   = digest.FromString("config")
	dL1    = digest.FromString("layer1")
	dL2    = digest.FromString("layer2")
	dM1    = digest.FromString("manifest1")
	dM2    = digest.FromString("manifest2")
	dSubj  = digest.FromString("subject")
	dEmpty = digest.FromString("{}")
)

func desc(mt string, d digest.Digest, size int) string {
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mt, d, size)
}

func ociManifest(extra string) string {
	return `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIManifest + `","config":` + desc(mtOCIConfig, dCfg, 6) +
		`,"layers":[` + desc(mtOCILayer, dL1, 6) + `,` + desc(mtOCILayer, dL2, 6) + `]` + extra + `}`
}

type manifestCase struct {
	name      string
	ct        string
	body      string
	wantErr   bool
	mediaType string
	artifact  string
	refs      int // len(References())
	subject   digest.Digest
}

func manifestCases() []manifestCase {
	emptyData := base64.StdEncoding.EncodeToString([]byte("{}"))
	wrongData := base64.StdEncoding.EncodeToString([]byte("{ }"))
	children := `"manifests":[` + desc(stowage.MediaTypeOCIManifest, dM1, 100) + `,` + desc(stowage.MediaTypeOCIManifest, dM2, 200) + `]`
	dockerChildren := `"manifests":[` + desc(stowage.MediaTypeDockerManifest, dM1, 100) + `]`
	return []manifestCase{
		// Accepted.
		{name: "oci manifest", ct: stowage.MediaTypeOCIManifest, body: ociManifest(""),
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
		{name: "oci manifest, content-type with params", ct: stowage.MediaTypeOCIManifest + "; charset=utf-8", body: ociManifest(""),
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
		{name: "oci manifest, no content-type", ct: "", body: ociManifest(""),
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
		{name: "oci manifest, generic content-type", ct: "application/json", body: ociManifest(""),
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
		{name: "oci manifest, octet-stream content-type", ct: "application/octet-stream", body: ociManifest(""),
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
		{name: "oci manifest, unparsable content-type", ct: ";;;", body: ociManifest(""),
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
		{name: "oci manifest without mediaType, content-type says", ct: stowage.MediaTypeOCIManifest,
			body:      `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `,"layers":[]}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 1},
		{name: "oci manifest without mediaType nor content-type", ct: "",
			body:      `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 1},
		{name: "oci manifest with annotations and whitespace", ct: stowage.MediaTypeOCIManifest,
			body:      "\n  " + ociManifest(`,"annotations":{"a":"b"}`) + "\n\t ",
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
		{name: "oci manifest with foreign and nondistributable layers", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIManifest + `","config":` + desc(mtOCIConfig, dCfg, 6) +
				`,"layers":[` + desc(mtForeign, dL1, 6) + `,` + desc(mtNonDist, dL2, 6) + `,` + desc(mtOCILayer, dM1, 3) + `]}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 4}, // pushed foreign layers are references too
		{name: "oci manifest with sha512 layer", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `,"layers":[` +
				desc(mtOCILayer, digest.SHA512.FromString("x"), 1) + `]}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 2},
		{name: "oci index", ct: stowage.MediaTypeOCIIndex,
			body:      `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `",` + children + `}`,
			mediaType: stowage.MediaTypeOCIIndex, refs: 2},
		{name: "oci index without mediaType nor content-type", ct: "",
			body:      `{"schemaVersion":2,` + children + `}`,
			mediaType: stowage.MediaTypeOCIIndex, refs: 2},
		{name: "oci index without mediaType, generic content-type", ct: "text/plain",
			body:      `{"schemaVersion":2,` + children + `}`,
			mediaType: stowage.MediaTypeOCIIndex, refs: 2},
		{name: "empty oci index", ct: stowage.MediaTypeOCIIndex,
			body:      `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `","manifests":[]}`,
			mediaType: stowage.MediaTypeOCIIndex, refs: 0},
		{name: "oci index with artifactType and subject", ct: stowage.MediaTypeOCIIndex,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `","artifactType":"application/vnd.example+type",` +
				children + `,"subject":` + desc(stowage.MediaTypeOCIManifest, dSubj, 10) + `}`,
			mediaType: stowage.MediaTypeOCIIndex, artifact: "application/vnd.example+type", refs: 2, subject: dSubj},
		{name: "docker schema2 manifest", ct: stowage.MediaTypeDockerManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeDockerManifest + `","config":` + desc(mtDockerCfg, dCfg, 6) +
				`,"layers":[` + desc(mtDockerLayer, dL1, 6) + `]}`,
			mediaType: stowage.MediaTypeDockerManifest, artifact: mtDockerCfg, refs: 2},
		{name: "docker schema2 manifest, generic content-type", ct: "application/json",
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeDockerManifest + `","config":` + desc(mtDockerCfg, dCfg, 6) +
				`,"layers":[` + desc(mtDockerLayer, dL1, 6) + `]}`,
			mediaType: stowage.MediaTypeDockerManifest, artifact: mtDockerCfg, refs: 2},
		{name: "docker manifest list", ct: stowage.MediaTypeDockerList,
			body:      `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeDockerList + `",` + dockerChildren + `}`,
			mediaType: stowage.MediaTypeDockerList, refs: 1},
		{name: "docker manifest list without mediaType, content-type says", ct: stowage.MediaTypeDockerList,
			body:      `{"schemaVersion":2,` + dockerChildren + `}`,
			mediaType: stowage.MediaTypeDockerList, refs: 1},
		{name: "artifact with artifactType and subject", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIManifest + `","artifactType":"application/vnd.example.sig",` +
				`"config":` + desc(mtEmpty, dEmpty, 2) + `,"layers":[` + desc("application/vnd.example.sig.v1", dL1, 6) + `],` +
				`"subject":` + desc(stowage.MediaTypeOCIManifest, dSubj, 10) + `}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: "application/vnd.example.sig", refs: 2, subject: dSubj},
		{name: "artifact typed by its config", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIManifest + `",` +
				`"config":` + desc("application/vnd.example.sbom.config", dCfg, 6) + `,"layers":[],` +
				`"subject":` + desc(stowage.MediaTypeOCIManifest, dSubj, 10) + `}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: "application/vnd.example.sbom.config", refs: 1, subject: dSubj},
		{name: "config with matching data", ct: stowage.MediaTypeOCIManifest,
			body:      `{"schemaVersion":2,"config":{"mediaType":"` + mtEmpty + `","digest":"` + string(dEmpty) + `","size":2,"data":"` + emptyData + `"}}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtEmpty, refs: 1},
		{name: "layer with empty data", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `,"layers":[{"mediaType":"` + mtOCILayer +
				`","digest":"` + string(digest.FromString("")) + `","size":0,"data":""}]}`,
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 2},

		// Rejected.
		{name: "empty body", ct: stowage.MediaTypeOCIManifest, body: ``, wantErr: true},
		{name: "not json", ct: stowage.MediaTypeOCIManifest, body: `not json`, wantErr: true},
		{name: "truncated json", ct: stowage.MediaTypeOCIManifest, body: ociManifest("")[:50], wantErr: true},
		{name: "json null", ct: stowage.MediaTypeOCIManifest, body: `null`, wantErr: true},
		{name: "json array", ct: stowage.MediaTypeOCIManifest, body: `[]`, wantErr: true},
		{name: "json number", ct: stowage.MediaTypeOCIManifest, body: `2`, wantErr: true},
		{name: "two json objects", ct: stowage.MediaTypeOCIManifest, body: ociManifest("") + ociManifest(""), wantErr: true},
		{name: "trailing garbage", ct: stowage.MediaTypeOCIManifest, body: ociManifest("") + "x", wantErr: true},
		{name: "no schemaVersion", ct: stowage.MediaTypeOCIManifest,
			body: `{"mediaType":"` + stowage.MediaTypeOCIManifest + `","config":` + desc(mtOCIConfig, dCfg, 6) + `}`, wantErr: true},
		{name: "schemaVersion 3", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":3,"config":` + desc(mtOCIConfig, dCfg, 6) + `}`, wantErr: true},
		{name: "schemaVersion string", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":"2","config":` + desc(mtOCIConfig, dCfg, 6) + `}`, wantErr: true},
		{name: "docker schema1", ct: mtSchema1Sig,
			body: `{"schemaVersion":1,"name":"r","tag":"latest","architecture":"amd64","fsLayers":[],"history":[],"signatures":[]}`, wantErr: true},
		{name: "docker schema1 media type with schemaVersion 2", ct: mtSchema1,
			body: `{"schemaVersion":2,"mediaType":"` + mtSchema1 + `","config":` + desc(mtOCIConfig, dCfg, 6) + `}`, wantErr: true},
		{name: "docker schema1 content-type, no mediaType", ct: mtSchema1,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `}`, wantErr: true},
		{name: "unknown media type", ct: "application/vnd.example+json",
			body: `{"schemaVersion":2,"mediaType":"application/vnd.example+json","config":` + desc(mtOCIConfig, dCfg, 6) + `}`, wantErr: true},
		{name: "oci artifact manifest media type", ct: "application/vnd.oci.artifact.manifest.v1+json",
			body: `{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json","blobs":[]}`, wantErr: true},
		{name: "content-type vs mediaType mismatch", ct: stowage.MediaTypeDockerManifest, body: ociManifest(""), wantErr: true},
		{name: "content-type index, body manifest", ct: stowage.MediaTypeOCIIndex, body: ociManifest(""), wantErr: true},
		{name: "content-type manifest, body index", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `",` + children + `}`, wantErr: true},
		{name: "missing config", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIManifest + `","layers":[` + desc(mtOCILayer, dL1, 6) + `]}`, wantErr: true},
		{name: "null config", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIManifest + `","config":null}`, wantErr: true},
		{name: "docker manifest missing config", ct: stowage.MediaTypeDockerManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeDockerManifest + `","layers":[]}`, wantErr: true},
		{name: "image manifest with manifests", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIManifest + `","config":` + desc(mtOCIConfig, dCfg, 6) + `,` + children + `}`, wantErr: true},
		{name: "index without manifests", ct: stowage.MediaTypeOCIIndex,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `"}`, wantErr: true},
		{name: "index with null manifests", ct: stowage.MediaTypeOCIIndex,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `","manifests":null}`, wantErr: true},
		{name: "index with config", ct: stowage.MediaTypeOCIIndex,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `","config":` + desc(mtOCIConfig, dCfg, 6) + `,` + children + `}`, wantErr: true},
		{name: "index with layers", ct: stowage.MediaTypeOCIIndex,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `","layers":[],` + children + `}`, wantErr: true},
		{name: "config digest not hex", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, "sha256:"+digest.Digest(strings.Repeat("z", 64)), 6) + `}`, wantErr: true},
		{name: "config digest uppercase", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, digest.Digest(strings.ToUpper(string(dCfg))), 6) + `}`, wantErr: true},
		{name: "config digest empty", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":{"mediaType":"` + mtOCIConfig + `","size":6}}`, wantErr: true},
		{name: "layer digest short", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `,"layers":[` + desc(mtOCILayer, dL1[:20], 6) + `]}`, wantErr: true},
		{name: "layer digest unsupported algorithm", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `,"layers":[` + desc(mtOCILayer, "md5:"+digest.Digest(strings.Repeat("a", 32)), 6) + `]}`, wantErr: true},
		{name: "index child digest invalid", ct: stowage.MediaTypeOCIIndex,
			body: `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `","manifests":[` + desc(stowage.MediaTypeOCIManifest, "sha256:nope", 1) + `]}`, wantErr: true},
		{name: "subject digest invalid", ct: stowage.MediaTypeOCIManifest,
			body: ociManifest(`,"subject":` + desc(stowage.MediaTypeOCIManifest, "sha256:nope", 1)), wantErr: true},
		{name: "negative size", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, -1) + `}`, wantErr: true},
		{name: "descriptor without mediaType", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `,"layers":[{"digest":"` + string(dL1) + `","size":6}]}`, wantErr: true},
		{name: "data does not match digest", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":{"mediaType":"` + mtEmpty + `","digest":"` + string(dEmpty) + `","size":3,"data":"` + wrongData + `"}}`, wantErr: true},
		{name: "data does not match size", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":{"mediaType":"` + mtEmpty + `","digest":"` + string(dEmpty) + `","size":5,"data":"` + emptyData + `"}}`, wantErr: true},
		{name: "data not base64", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":{"mediaType":"` + mtEmpty + `","digest":"` + string(dEmpty) + `","size":2,"data":"!!"}}`, wantErr: true},
		{name: "size not a number", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":{"mediaType":"` + mtOCIConfig + `","digest":"` + string(dCfg) + `","size":"6"}}`, wantErr: true},
		{name: "layers not an array", ct: stowage.MediaTypeOCIManifest,
			body: `{"schemaVersion":2,"config":` + desc(mtOCIConfig, dCfg, 6) + `,"layers":{}}`, wantErr: true},
		{name: "over 4 MiB", ct: stowage.MediaTypeOCIManifest, body: paddedManifest(stowage.MaxManifestSize + 1), wantErr: true},
		{name: "exactly 4 MiB", ct: stowage.MediaTypeOCIManifest, body: paddedManifest(stowage.MaxManifestSize),
			mediaType: stowage.MediaTypeOCIManifest, artifact: mtOCIConfig, refs: 3},
	}
}

// paddedManifest returns a valid OCI manifest of exactly n bytes.
func paddedManifest(n int) string {
	base := ociManifest(`,"annotations":{"pad":""}`)
	pad := n - len(base)
	if pad < 0 {
		panic("n too small")
	}
	return ociManifest(`,"annotations":{"pad":"` + strings.Repeat("x", pad) + `"}`)
}

func TestParseManifest(t *testing.T) {
	for _, tt := range manifestCases() {
		t.Run(tt.name, func(t *testing.T) {
			m, err := stowage.ParseManifest(tt.ct, []byte(tt.body))
			if tt.wantErr {
				wantCode(t, err, stowage.CodeManifestInvalid)
				if m != nil {
					t.Errorf("manifest returned with the error")
				}
				return
			}
			wantCode(t, err, "")
			if m.MediaType != tt.mediaType {
				t.Errorf("MediaType = %q, want %q", m.MediaType, tt.mediaType)
			}
			if m.ArtifactType != tt.artifact {
				t.Errorf("ArtifactType = %q, want %q", m.ArtifactType, tt.artifact)
			}
			if got := len(m.References()); got != tt.refs {
				t.Errorf("len(References()) = %d, want %d: %+v", got, tt.refs, m.References())
			}
			var subj digest.Digest
			if m.Subject != nil {
				subj = m.Subject.Digest
			}
			if subj != tt.subject {
				t.Errorf("Subject = %q, want %q", subj, tt.subject)
			}
		})
	}
}

func TestParseManifestFields(t *testing.T) {
	m, err := stowage.ParseManifest(stowage.MediaTypeOCIManifest, []byte(ociManifest(`,"annotations":{"org.opencontainers.image.title":"t"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Config == nil || m.Config.Digest != dCfg || m.Config.Size != 6 || m.Config.MediaType != mtOCIConfig {
		t.Errorf("Config = %+v", m.Config)
	}
	if len(m.Layers) != 2 || m.Layers[0].Digest != dL1 || m.Layers[1].Digest != dL2 {
		t.Errorf("Layers = %+v", m.Layers)
	}
	if m.Annotations["org.opencontainers.image.title"] != "t" {
		t.Errorf("Annotations = %v", m.Annotations)
	}
	want := []stowage.ManifestRef{{Digest: dCfg, Kind: stowage.RefBlob}, {Digest: dL1, Kind: stowage.RefBlob}, {Digest: dL2, Kind: stowage.RefBlob}}
	if got := m.References(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("References() = %v, want %v", got, want)
	}

	idx, err := stowage.ParseManifest("", []byte(`{"schemaVersion":2,"manifests":[`+desc(stowage.MediaTypeOCIManifest, dM1, 1)+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	want = []stowage.ManifestRef{{Digest: dM1, Kind: stowage.RefManifest}}
	if got := idx.References(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("index References() = %v, want %v", got, want)
	}
	if !stowage.IsIndex(idx.MediaType) || stowage.IsIndex(m.MediaType) || !stowage.IsIndex(stowage.MediaTypeDockerList) {
		t.Errorf("IsIndex is wrong")
	}
}

// TestParseManifestRejectsTrailingCloser: a manifest followed by a stray '}'
// or ']' is not valid JSON, and clients that parse it (json.Unmarshal, any
// strict parser) fail; the registry must not accept and store it. It once did
// (json.Decoder.More is false before a closer).
func TestParseManifestRejectsTrailingCloser(t *testing.T) {
	for _, suffix := range []string{"}", "]", "]]]", "}garbage", " ] not json"} {
		body := ociManifest("") + suffix
		t.Run(suffix, func(t *testing.T) {
			if json.Valid([]byte(body)) {
				t.Fatal("test body is valid JSON")
			}
			m, err := stowage.ParseManifest(stowage.MediaTypeOCIManifest, []byte(body))
			if err == nil {
				t.Fatalf("ParseManifest accepted %q (media type %s)", trunc(suffix), m.MediaType)
			}
			wantCode(t, err, stowage.CodeManifestInvalid)
		})
	}
}

func TestIndex(t *testing.T) {
	b, err := stowage.Index(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"schemaVersion":2,"mediaType":"` + stowage.MediaTypeOCIIndex + `","manifests":[]}`; string(b) != want {
		t.Errorf("Index(nil) = %s, want %s", b, want)
	}
	b, err = stowage.Index([]stowage.Descriptor{{MediaType: stowage.MediaTypeOCIManifest, Digest: dM1, Size: 3, ArtifactType: "x/y"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stowage.ParseManifest(stowage.MediaTypeOCIIndex, b)
	if err != nil {
		t.Fatalf("Index output does not parse: %v", err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].ArtifactType != "x/y" {
		t.Errorf("Index round trip: %+v", m.Manifests)
	}
}
