package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/stowage/stowage/internal/testenv"
)

// gateway is one versitygw (S3) server process.
type gateway struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

const gwKey, gwSecret = "stowagee2e", "e2e-secret-0123456789abcdef"

func startGateway(t *testing.T, bin, dir string, port int) *gateway {
	t.Helper()
	g := &gateway{port: port, dir: dir}
	os.MkdirAll(dir, 0o755)
	args := []string{"--port", fmt.Sprintf("127.0.0.1:%d", port), "--quiet", "posix"}
	if os.Getenv("STOWAGE_TEST_VERSITYGW_SIDECAR") != "" {
		args = append(args, "--sidecar", dir+".sidecar")
		os.MkdirAll(dir+".sidecar", 0o755)
	}
	g.cmd = exec.Command(bin, append(args, dir)...)
	g.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+gwKey, "ROOT_SECRET_KEY="+gwSecret)
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.stop)
	for i := 0; i < 100; i++ {
		if resp, err := http.Get(g.url() + "/"); err == nil {
			resp.Body.Close()
			return g
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("versitygw on port %d did not start", port)
	return nil
}

func (g *gateway) url() string { return fmt.Sprintf("http://127.0.0.1:%d", g.port) }

func (g *gateway) stop() {
	if g.cmd != nil && g.cmd.Process != nil {
		g.cmd.Process.Signal(syscall.SIGKILL)
		g.cmd.Wait()
		g.cmd = nil
	}
}

func createBucket(t *testing.T, endpoint, bucket string) {
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(gwKey, gwSecret, "")})
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket on %s: %v", endpoint, err)
	}
}

// TestMirrorOfTwoS3Servers: a registry mirrored over two real S3 servers
// (versitygw). One server is killed in the middle: every pull is served by
// the other copy; with write quorum 1 pushes go on, and when the server is
// back the repair copies what it missed; with quorum 2 a push fails with a
// clear 503 and nothing becomes visible.
func TestMirrorOfTwoS3Servers(t *testing.T) {
	bin := os.Getenv("STOWAGE_TEST_VERSITYGW")
	if bin == "" {
		testenv.Skip(t, "versitygw", "STOWAGE_TEST_VERSITYGW is not set: run scripts/s3-test.sh")
	}
	needServer(t)
	dir := t.TempDir()
	gws := []*gateway{
		startGateway(t, bin, filepath.Join(dir, "gw-east"), freePort(t)),
		startGateway(t, bin, filepath.Join(dir, "gw-west"), freePort(t)),
	}
	for _, g := range gws {
		createBucket(t, g.url(), "registry")
	}
	config := func(quorum int) string {
		return writeConfig(t, fmt.Sprintf(`
storage:
  mirror:
    write_quorum: %d
    timeout: 3s
    copies:
      - name: east
        s3: {endpoint: %s, region: us-east-1, bucket: registry, access_key_id: %s, secret_access_key: %s, path_style: true}
      - name: west
        s3: {endpoint: %s, region: us-east-1, bucket: registry, access_key_id: %s, secret_access_key: %s, path_style: true}
`, quorum, gws[0].url(), gwKey, gwSecret, gws[1].url(), gwKey, gwSecret))
	}
	data := filepath.Join(dir, "data")
	s := startServer(t, data, "--config="+config(1))
	blobs := map[string][]byte{}
	for i := range 8 {
		b := randomBytes(t, 50_000+i*40_000)
		if i%2 == 0 {
			blobs[pushBlob(t, s.URL, "geo/app", b)] = b
		} else {
			blobs[pushChunked(t, s.URL, "geo/app", b, 60_000)] = b
		}
	}
	pullAll := func(what string) {
		t.Helper()
		n := 0
		for d, b := range blobs {
			r := mustDo(t, http.MethodGet, s.URL, "/v2/geo/app/blobs/"+d, nil, nil)
			if r.Status != 200 || !bytes.Equal(r.Body, b) {
				t.Errorf("%s: pull %s: %s", what, d[:19], r)
				continue
			}
			n++
		}
		t.Logf("%s: %d of %d pulls succeeded", what, n, len(blobs))
	}
	pullAll("both copies up")
	gws[0].stop() // east goes away
	pullAll("east killed")
	// Quorum 1: pushes go on while east is down.
	late := randomBytes(t, 123_456)
	ld := pushBlob(t, s.URL, "geo/app", late)
	blobs[ld] = late
	pullAll("east still down, after a push")
	st, _ := stowageCLI(t, "storage", "status", "--registry", s.URL)
	if !strings.Contains(st, "east") || strings.Contains(st, "east             healthy") {
		t.Errorf("storage status while east is down:\n%s", st)
	}
	// East comes back (same data): the repair job copies what it missed.
	gws[0] = startGateway(t, bin, filepath.Join(dir, "gw-east"), gws[0].port)
	out, err := stowageCLI(t, "scrub", "--registry", s.URL, "--output", "json")
	if err != nil || !strings.Contains(out, `"lost": 0`) {
		t.Errorf("scrub after east came back: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"repairedCopies": `) || strings.Contains(out, `"repairedCopies": 0,`) {
		t.Errorf("scrub repaired nothing, though east missed a push:\n%s", out)
	}
	httpClient.CloseIdleConnections()
	s.Stop()

	// Quorum 2: with west down, a push fails clearly and nothing is visible.
	s = startServer(t, data, "--config="+config(2))
	gws[1].stop()
	b := randomBytes(t, 80_000)
	d := sha256Digest(b)
	r := mustDo(t, http.MethodPost, s.URL, "/v2/geo/app/blobs/uploads/?digest="+d, nil, b)
	if !expect(t, "push with west down and quorum 2", r, http.StatusServiceUnavailable, "UNAVAILABLE") ||
		!strings.Contains(string(r.Body), "quorum") {
		t.Errorf("push with quorum not reached: %s", r)
	}
	if r := mustDo(t, http.MethodHead, s.URL, "/v2/geo/app/blobs/"+d, nil, nil); r.Status != http.StatusNotFound {
		t.Errorf("the refused blob is visible: HEAD %d", r.Status)
	}
	pullAll("west killed, quorum 2")
	httpClient.CloseIdleConnections()
}
