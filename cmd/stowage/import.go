package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/stowage/stowage/transfer"
)

const importUsage = `Usage: stowage import LAYOUT [--repository NAME]

Pushes the images of an OCI image layout into the registry: LAYOUT is a
directory, a tar of one, or - (a tar on standard input). Layouts written by
'stowage export', skopeo (oci:DIR:TAG, oci-archive:), crane, oras,
docker/containerd exports in OCI form all work; indexes with every platform,
nested indexes, Docker media types and referrers are pushed as they are
(same digests).

Names come from the layout's index.json (org.opencontainers.image.ref.name:
"team/app:v1", or only a tag "v1" with --repository); --repository NAME puts
every image into NAME.

Blobs the registry already has (in any repository you may read) are
linked with a cross-repository mount, no bytes sent; the rest are uploaded,
each verified by digest on the way in. It is a push: locks, quotas and tag
immutability apply. Interrupted, it can be run again: what was pushed is
skipped.
`

// importArgs is a parsed import command line.
type importArgs struct {
	reg, repository, output string
	parallel                int
	fl                      *flag.FlagSet
}

func parseImport(args []string, stderr io.Writer) (importArgs, int, bool) {
	var a importArgs
	var repo, output *string
	var parallel *int
	fl, reg, ok := parseAdmin("import", importUsage, args, stderr, func(fl *flag.FlagSet) {
		repo = fl.String("repository", "", "push every image into this repository (needed when the layout names only tags)")
		parallel = fl.Int("parallel", 4, "blobs pushed at once")
		output = fl.String("output", "table", "the report: table or json")
	})
	if !ok {
		return a, exitCode(fl, ok), false
	}
	a = importArgs{reg: *reg, repository: *repo, output: *output, parallel: *parallel, fl: fl}
	return a, 0, true
}

// runImport dispatches on the source: a layout (this file); an import from
// another registry (--from) is its own branch here, in its own file.
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if importFromRequested(args) { // a server-side copy from another registry (import_from.go)
		return runImportFrom(ctx, args, stdout, stderr)
	}
	a, code, ok := parseImport(args, stderr)
	if !ok {
		return code
	}
	return importLayout(ctx, a, stdout, stderr)
}

// importLayout imports the layout a names (a directory, a tar, or -).
func importLayout(ctx context.Context, a importArgs, stdout, stderr io.Writer) int {
	if a.fl.NArg() != 1 {
		fmt.Fprintln(stderr, "stowage import: one LAYOUT is needed: a directory, a tar file, or - for a tar on standard input (or --from REGISTRY/REPO:TAG to copy from another registry)")
		return 2
	}
	path := a.fl.Arg(0)
	src, err := transfer.OpenSource(path, os.Stdin)
	if err != nil {
		return fail(stderr, err)
	}
	defer src.Close()
	bar := newBytesBar(stderr, "import")
	c := newClient(a.reg, stdout, stderr)
	rep, err := transfer.Import(ctx, c.transfer(), src, transfer.ImportOptions{Repository: a.repository, Parallel: a.parallel, Progress: bar.show})
	bar.done()
	if err != nil {
		if a.output == "json" && rep.Blobs > 0 {
			printJSON(stdout, rep) // tagsPushed, refused
		}
		return fail(stderr, transfer.ExplainImport(err, rep)) // what was pushed, what was refused, whether a rerun helps
	}
	if a.output == "json" {
		return printJSON(stdout, rep)
	}
	refs := ""
	if rep.Referrers > 0 {
		refs = fmt.Sprintf(" and %d referrers", rep.Referrers)
	}
	fmt.Fprintf(stdout, "imported %d images%s (%d manifests pushed; %d blobs, %s: %d uploaded (%s), %d found in the registry and linked, no bytes sent) in %.1fs, %.1f MB/s\n",
		rep.Images, refs, rep.Manifests, rep.Blobs, bytesStr(rep.Bytes), rep.BlobsUploaded, bytesStr(rep.Uploaded), rep.BlobsMounted, rep.Seconds, rep.MBPerSecond)
	if len(rep.Tags) > 0 && len(rep.Tags) <= 20 {
		fmt.Fprintf(stdout, "tags: %s\n", strings.Join(rep.Tags, ", "))
	}
	return 0
}
