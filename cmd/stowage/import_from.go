package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/remote"
)

const importFromUsage = `Usage: stowage import --from REGISTRY/REPOSITORY:TAG|@DIGEST [--to REPOSITORY[:TAG]] [flags]

Copies an image from another registry into this one, server-side (as
az acr import): the registry itself pulls from the source and pushes through
its normal push path, so locks, quotas and immutability apply. Every platform
of a multi-platform image is copied (or --platform's), with its signatures,
SBOMs and other referrers with --referrers; blobs the registry already holds
(in any repository) are not downloaded again. There is no limit on the
number of manifests or the size of layers. The progress shows while it runs.

The source's credentials (--username, and the password on stdin with
--password-stdin) are sent to the registry for this import only: it never
stores or logs them. It uses them for Basic authentication or for the Docker
token flow, whichever the source asks for; without them it pulls
anonymously (Docker Hub, public images on ghcr.io and others).

Examples:
  stowage import --from ghcr.io/org/app:v1.2
  stowage import --from registry-1.docker.io/library/alpine:3.20 --to mirror/alpine:3.20 --referrers
  echo "$PASS" | stowage import --from myreg.azurecr.io/app@sha256:… --to app:prod --username ci --password-stdin
`

// importFromRequested reports whether an import command line asks for a
// copy from another registry (--from), so that `stowage import` can hand it
// to runImportFrom before it reads an OCI layout.
func importFromRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--from" || a == "-from" || strings.HasPrefix(a, "--from=") || strings.HasPrefix(a, "-from=") {
			return true
		}
	}
	return false
}

func runImportFrom(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runImportFromStdin(ctx, args, os.Stdin, stdout, stderr)
}

func runImportFromStdin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var from, to, user, platform, output *string
	var passStdin, referrers, plainHTTP *bool
	fl, reg, ok := parseAdmin("import", importFromUsage, args, stderr, func(fl *flag.FlagSet) {
		from = fl.String("from", "", "the image to copy: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST")
		to = fl.String("to", "", "where to put it here: REPOSITORY[:TAG] (default: the source's repository and tag)")
		user = fl.String("username", "", "user name for the source registry")
		passStdin = fl.Bool("password-stdin", false, "read the source registry's password (or token) from stdin")
		referrers = fl.Bool("referrers", false, "also copy referrers: signatures, SBOMs, attestations")
		platform = fl.String("platform", "all", "all, or one platform of a multi-platform image: os/arch[/variant] (its image is copied, not the index)")
		plainHTTP = fl.Bool("plain-http", false, "talk to the source registry over http:// (a registry without TLS)")
		output = fl.String("output", "table", "table or json")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if !noArguments(fl, "import", stderr) {
		return 2
	}
	if *from == "" {
		fmt.Fprintln(stderr, "stowage import: --from REGISTRY/REPOSITORY:TAG is required for an import from another registry")
		return 2
	}
	if _, err := remote.ParseImage(*from); err != nil {
		fmt.Fprintf(stderr, "stowage import: --from: %v\n", err)
		return 2
	}
	req := mgmt.ImportRequest{Source: *from, Target: *to, Username: *user, Referrers: *referrers, Platform: *platform, PlainHTTP: *plainHTTP}
	if *passStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return fail(stderr, fmt.Errorf("read the password from stdin: %w", err))
		}
		req.Password = strings.TrimRight(string(b), "\r\n")
		if req.Password == "" {
			fmt.Fprintln(stderr, "stowage import: --password-stdin: stdin is empty")
			return 2
		}
	}
	if req.Password != "" && req.Username == "" {
		fmt.Fprintln(stderr, "stowage import: --password-stdin needs --username")
		return 2
	}
	body, _ := json.Marshal(req)
	c := newClient(*reg, stdout, stderr)
	var rep struct {
		remote.CopyReport
		Tags     []string `json:"tags"`
		Duration string   `json:"duration"`
	}
	if err := c.importJob(ctx, body, &rep); err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		return printJSON(stdout, rep)
	}
	target := rep.Target
	if len(rep.Tags) > 0 {
		target += ":" + strings.Join(rep.Tags, ",")
	}
	fmt.Fprintf(stdout, "imported %s\n      to %s@%s\n", rep.Source, target, rep.Digest)
	fmt.Fprintf(stdout, "%d manifests (%d referrers), %d blobs copied (%s), %d already here (%s), in %s\n",
		rep.Manifests, rep.Referrers, rep.Blobs, bytesStr(rep.BytesCopied), rep.BlobsPresent, bytesStr(rep.BytesPresent), rep.Duration)
	return 0
}

// importJob POSTs an import and follows its streamed progress (a bar on a
// terminal, one summary line otherwise) until its report.
func (c *client) importJob(ctx context.Context, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/api/v1/imports", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.roundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bar := &copyBar{w: c.stderr, tty: isTerminal(c.stderr), start: time.Now()}
	defer bar.done()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var line struct {
			Progress *struct {
				Copy remote.Progress `json:"copy"`
			}
			Report json.RawMessage
			Error  string
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			continue
		}
		switch {
		case line.Progress != nil:
			bar.show(line.Progress.Copy)
		case line.Error != "":
			return errors.New(line.Error)
		case line.Report != nil:
			return json.Unmarshal(line.Report, out)
		}
	}
	return fmt.Errorf("the registry closed the connection before the import finished (%v); run the same command again: what was copied is not copied twice", sc.Err())
}

// copyBar draws an import's progress: manifests read, then bytes copied
// with the rate, then manifests pushed.
type copyBar struct {
	w     io.Writer
	tty   bool
	drawn bool
	start time.Time
	last  remote.Progress
}

func (b *copyBar) show(p remote.Progress) {
	b.last = p
	if !b.tty {
		return
	}
	const width = 30
	var done, total int64
	var text string
	switch p.Phase {
	case "blobs":
		done, total = p.Bytes, p.BytesTotal
		rate := float64(p.Bytes) / max(time.Since(b.start).Seconds(), 0.001)
		text = fmt.Sprintf("%s / %s  %s/s", bytesStr(p.Bytes), bytesStr(p.BytesTotal), bytesStr(int64(rate)))
	case "push":
		done, total = int64(p.Manifests), int64(p.ManifestsTotal)
		text = fmt.Sprintf("%d/%d manifests", p.Manifests, p.ManifestsTotal)
	default:
		done, total = 1, 1
		text = fmt.Sprintf("%d manifests", p.ManifestsTotal)
	}
	fill := width
	if total > 0 {
		fill = int(min(done, total) * width / total)
	}
	fmt.Fprintf(b.w, "\r%-9s [%s%s] %-40s", p.Phase, strings.Repeat("#", fill), strings.Repeat(".", width-fill), text)
	b.drawn = true
}

func (b *copyBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
	if !b.tty && b.last.ManifestsTotal > 0 {
		fmt.Fprintf(b.w, "progress: %d manifests, %s of %s copied\n", b.last.Manifests, bytesStr(b.last.Bytes), bytesStr(b.last.BytesTotal))
	}
}
