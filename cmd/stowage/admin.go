package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/gc"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/recyclebin"
	space "github.com/stowage/stowage/usage"
)

// client is the admin CLI's side of the management API.
type client struct {
	setupErr error // a bad --ca-cert, reported by the first request
	base     string
	http     *http.Client
	stdout   io.Writer
	stderr   io.Writer
}

// adminFlags adds the flags every admin command shares.
func adminFlags(fl *flag.FlagSet) *string {
	def := os.Getenv("STOWAGE_REGISTRY")
	if def == "" {
		def = "http://127.0.0.1:5000"
	}
	adminTLS = tlsFlags{caCert: os.Getenv("STOWAGE_CA_CERT")}
	fl.StringVar(&adminTLS.caCert, "ca-cert", adminTLS.caCert, "PEM file of the CA that signed the registry's certificate, added to the system's (env STOWAGE_CA_CERT)")
	fl.BoolVar(&adminTLS.insecure, "insecure", false, "do not verify the registry's TLS certificate (tests only: anyone on the path can read the credentials)")
	return fl.String("registry", def, "URL of the registry to manage, http:// or https:// (env STOWAGE_REGISTRY)")
}

// tlsFlags are the admin commands' TLS flags, of the command being run
// (one per process).
type tlsFlags struct {
	caCert   string
	insecure bool
}

var adminTLS tlsFlags

// registryFrom and caCertFrom name where --registry and --ca-cert came
// from, for errors: the flag, or the environment variable that set it
// (a user who never typed --registry looks for STOWAGE_REGISTRY).
var registryFrom, caCertFrom = "--registry", "--ca-cert"

// setSources records whether --registry and --ca-cert came from the
// command line or the environment.
func setSources(fl *flag.FlagSet) {
	registryFrom, caCertFrom = "--registry", "--ca-cert"
	if !flagSet(fl, "registry") && os.Getenv("STOWAGE_REGISTRY") != "" {
		registryFrom = "STOWAGE_REGISTRY"
	}
	if !flagSet(fl, "ca-cert") && os.Getenv("STOWAGE_CA_CERT") != "" {
		caCertFrom = "STOWAGE_CA_CERT"
	}
}

// registryFix says how to point the commands at url: the flag, or the
// variable that set the wrong one.
func registryFix(url string) string {
	if registryFrom == "STOWAGE_REGISTRY" {
		return "set STOWAGE_REGISTRY=" + url
	}
	return "use --registry " + url
}

// checkRegistry refuses a --registry without a scheme, naming the fix:
// guessing https would send credentials to a port that may speak http.
func checkRegistry(reg string) error {
	u, err := url.Parse(reg)
	flagName := "--registry "
	if registryFrom == "STOWAGE_REGISTRY" {
		flagName = "STOWAGE_REGISTRY="
	}
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		if strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			// The registry's base URL: the API is at /v2/ and /api/v1/ under it.
			return fmt.Errorf("%s%q: drop the path, give the registry's base URL: %s%s://%s", flagName, reg, flagName, u.Scheme, u.Host)
		}
		return nil
	}
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return fmt.Errorf("%s%q has no host: want e.g. %s%s://registry.example.com:5000", flagName, reg, flagName, u.Scheme)
	}
	host := reg
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	if registryFrom == "STOWAGE_REGISTRY" {
		return fmt.Errorf("STOWAGE_REGISTRY=%q: want a URL with http:// or https://, e.g. STOWAGE_REGISTRY=https://%s (or http://%s for a registry without TLS)", reg, host, host)
	}
	return fmt.Errorf("--registry %q: want a URL with http:// or https://, e.g. --registry https://%s (or http://%s for a registry without TLS)", reg, host, host)
}

func newClient(base string, stdout, stderr io.Writer) *client {
	c := &client{base: strings.TrimRight(base, "/"), http: &http.Client{}, stdout: stdout, stderr: stderr}
	if adminTLS.caCert != "" || adminTLS.insecure {
		cfg := &tls.Config{InsecureSkipVerify: adminTLS.insecure}
		if adminTLS.caCert != "" {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			c.setupErr = addCACerts(pool, adminTLS.caCert)
			cfg.RootCAs = pool
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg
		c.http.Transport = tr
	}
	return c
}

// addCACerts adds the certificates of the PEM file to pool, or says what
// the file holds instead (a private key is a common mix-up).
func addCACerts(pool *x509.CertPool, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s %s: %v (want a PEM file of the CA certificate that signed the registry's certificate)", caCertFrom, file, err)
	}
	if pool.AppendCertsFromPEM(b) {
		return nil
	}
	what := "no PEM certificate"
	if blk, _ := pem.Decode(b); blk != nil {
		what = "no certificate, only a PEM " + blk.Type
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			what += " (a key, not the CA's certificate)"
		}
	}
	return fmt.Errorf("%s %s holds %s: want the CA's certificate, a PEM file with -----BEGIN CERTIFICATE-----", caCertFrom, file, what)
}

// do sends a request without a body; see send.
func (c *client) do(ctx context.Context, method, path string, out any) error {
	return c.send(ctx, method, path, nil, out)
}

// send sends a request (with a JSON body if body is not nil) and decodes a
// JSON answer into out (if not nil); an error body becomes an error with
// the server's code and message.
func (c *client) send(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.roundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// getPage GETs path and decodes the JSON answer into out, and returns the
// path of the next page its Link header names ("" without one).
func (c *client) getPage(ctx context.Context, path string, out any) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.roundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return "", err
	}
	return nextLink(resp.Header.Get("Link")), nil
}

// nextLink is the target of a Link header's rel="next" ("" if none).
func nextLink(h string) string {
	for _, l := range strings.Split(h, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(l), ";")
		if ok && strings.Contains(params, `rel="next"`) && strings.HasPrefix(target, "<") && strings.HasSuffix(target, ">") {
			return target[1 : len(target)-1]
		}
	}
	return ""
}

// roundTrip sends req with the admin's credentials (STOWAGE_USERNAME and
// STOWAGE_PASSWORD, when set) and turns an error status into an error.
func (c *client) roundTrip(req *http.Request) (*http.Response, error) {
	if c.setupErr != nil {
		return nil, c.setupErr
	}
	if u := os.Getenv("STOWAGE_USERNAME"); u != "" {
		req.SetBasicAuth(u, os.Getenv("STOWAGE_PASSWORD"))
	}
	resp, err := c.http.Do(req)
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	switch {
	case errors.As(err, &unknownCA) && adminTLS.caCert != "":
		return nil, fmt.Errorf("the registry at %s has a certificate that the CA in %s (%s) did not sign, nor any CA the system trusts: pass the certificate of the CA that signed it (openssl s_client -connect HOST:PORT -showcerts shows the chain), or, for a test registry only, --insecure", c.base, caCertFrom, adminTLS.caCert)
	case errors.As(err, &unknownCA):
		return nil, fmt.Errorf("the registry at %s has a certificate signed by an unknown authority: pass that CA's certificate with --ca-cert FILE (or STOWAGE_CA_CERT), or, for a test registry only, --insecure", c.base)
	case errors.As(err, &badHost):
		return nil, fmt.Errorf("the registry's certificate is not valid for %s (%v): point %s at a name the certificate holds", c.base, err, registryFrom)
	case err != nil && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return nil, fmt.Errorf("the registry at %s speaks http, not https: %s", c.base, registryFix("http://"+strings.TrimPrefix(c.base, "https://")))
	case err != nil:
		return nil, fmt.Errorf("cannot reach the registry at %s: %w (is 'stowage serve' running? point %s at it)", c.base, err, registryFrom)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	err = apiError(resp)
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(err.Error(), "HTTP request to an HTTPS server") {
		// Go's server answers plain HTTP on a TLS port with this 400.
		return nil, fmt.Errorf("the registry at %s speaks https, not http: %s", c.base, registryFix("https://"+strings.TrimPrefix(c.base, "http://")))
	}
	if resp.StatusCode == http.StatusUnauthorized && os.Getenv("STOWAGE_USERNAME") == "" {
		err = fmt.Errorf("%w\n  access control is on: set STOWAGE_USERNAME and STOWAGE_PASSWORD (an admin's, for most commands)", err)
	}
	return nil, err
}

func apiError(resp *http.Response) error {
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		return fmt.Errorf("%s: %s", body.Errors[0].Code, body.Errors[0].Message)
	}
	return fmt.Errorf("registry answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
}

func parseAdmin(name, usage string, args []string, stderr io.Writer, setup func(*flag.FlagSet)) (*flag.FlagSet, *string, bool) {
	helpAsked = false
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, usage, "\nFlags:\n"); fl.PrintDefaults() }
	reg := adminFlags(fl)
	if setup != nil {
		setup(fl)
	}
	// Flags may come before or after the arguments (stowage lock app:v1
	// --write=false): parse, set the first argument aside, go on.
	var pos []string
	for rest := args; ; {
		if err := parseFlags(fl, rest, stderr); err != nil {
			helpAsked = errors.Is(err, flag.ErrHelp)
			return fl, reg, false
		}
		if fl.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fl.Arg(0)), fl.Args()[1:]
	}
	fl.Parse(append([]string{"--"}, pos...)) // fl.Args() = the arguments
	setSources(fl)
	if tooManyArgs(fl, name, fl.Args(), stderr) {
		return fl, reg, false
	}
	if err := checkRegistry(*reg); err != nil {
		fmt.Fprintf(stderr, "stowage %s: %v\n", name, err)
		return fl, reg, false
	}
	if o := fl.Lookup("output"); o != nil && o.Value.String() != o.DefValue && badOutput(stderr, name, o.Value.String(), o.DefValue, "json") {
		return fl, reg, false
	}
	return fl, reg, true
}

// noArguments refuses positional arguments for a command that takes none
// (exit 2), suggesting the flag a word resembles: `stowage gc dry-run` ran
// a real collection before (outside review).
func noArguments(fl *flag.FlagSet, name string, stderr io.Writer) bool {
	if fl.NArg() == 0 {
		return true
	}
	unexpectedArg(fl, name, fl.Arg(0), stderr)
	return false
}

// The rule for commands with subcommands (groups; docs/cli.md): alone, or
// with only flags, a group runs its view, the subcommand that changes
// nothing and needs no argument (groupView); a group without one prints a
// short usage naming its subcommands and exits 2. A new group adds its
// subcommands to the subcommands table (completion.go) and, if it has a
// view, a line here.
var groupView = map[string]string{
	"retention":    "show",
	"purge-policy": "list",
	"immutability": "show",
	"soft-delete":  "show",
	"keys":         "status",
	"storage":      "status",
	"quota":        "show",
	"user":         "list",
	"scope-map":    "list",
	"token":        "list",
	"webhook":      "list",
	"cache-rule":   "list",
	"replication":  "status",
}

// subcommand splits "SUB [args]" for a group (cmd). Without a subcommand
// it returns the group's view, or prints a short usage (exit 2); -h prints
// the whole usage (exit 0). An unknown subcommand is left to the caller
// (unknownSub).
func subcommand(cmd string, args []string, usage string, stderr io.Writer) (sub string, rest []string, code int, ok bool) {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stderr, usage)
		return "", nil, 0, false
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		for _, a := range args {
			if slices.Contains(subcommands[cmd], a) {
				fmt.Fprintf(stderr, "stowage %s: the subcommand comes first: stowage %s %s [arguments] [flags]\n", cmd, cmd, a)
				return "", nil, 2, false
			}
		}
		if view, ok := groupView[cmd]; ok {
			return view, args, 0, true
		}
		return "", nil, shortUsage(stderr, cmd, usage, ""), false
	}
	if !slices.Contains(subcommands[cmd], args[0]) {
		return "", nil, unknownSub(stderr, cmd, args[0], usage), false
	}
	return args[0], args[1:], 0, true
}

// shortUsage prints why (if not empty), the usage's first line and where
// the rest is, instead of the whole help, and returns 2 (a wrong command
// line). cmd may be "group sub"; the help pointer names the group.
func shortUsage(stderr io.Writer, cmd, usage, why string) int {
	if why != "" {
		fmt.Fprintf(stderr, "stowage %s: %s\n", cmd, why)
	}
	first, _, _ := strings.Cut(usage, "\n")
	group, _, _ := strings.Cut(cmd, " ")
	fmt.Fprintf(stderr, "%s\nRun 'stowage %s --help' for the details.\n", first, group)
	return 2
}

// helpAsked records that the last parse stopped at -h (exit 0, not 2).
var helpAsked bool

func exitCode(fl *flag.FlagSet, ok bool) int {
	if !ok && !helpAsked {
		return 2
	}
	return 0
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "stowage:", err)
	return 1
}

// ---- usage ----

const usageUsage = `Usage: stowage usage [REPOSITORY] [flags]

Shows what uses space, exactly and deduplicated: for the registry, physical
bytes (each stored digest once), logical bytes (summed over repositories) and
the dedup ratio; per repository (by name), bytes referenced, bytes unique to
it (what deleting it frees) and bytes shared with others. With a REPOSITORY,
per manifest (newest first): its size and the bytes only it uses. Rows are
read a page at a time; --limit shows only the first ones.
`

// usagePage is the rows the command asks for at a time.
const usagePage = 1000

func runUsage(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var output *string
	var limit *int
	fl, reg, ok := parseAdmin("usage", usageUsage, args, stderr, func(fl *flag.FlagSet) {
		output = fl.String("output", "table", "table or json")
		limit = fl.Int("limit", 0, "show at most this many repositories (or manifests); 0: all")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	if fl.NArg() > 1 {
		fmt.Fprintln(stderr, "stowage usage: at most one repository")
		return 2
	}
	if *limit < 0 {
		fmt.Fprintln(stderr, "stowage usage: --limit wants 0 (all) or more")
		return 2
	}
	// pages walks the pages of path from the first, handing each to page,
	// until page returns no next page (it has what it wants, or the rows end).
	pages := func(path string, page func(path string) (string, error)) error {
		n := usagePage
		if *limit > 0 {
			n = min(n, *limit)
		}
		next := fmt.Sprintf("%s?n=%d", path, n)
		for next != "" {
			var err error
			if next, err = page(next); err != nil {
				return err
			}
		}
		return nil
	}
	full := func(rows int) bool { return *limit > 0 && rows >= *limit }
	if fl.NArg() == 1 {
		var d space.RepositoryDetail
		err := pages("/api/v1/usage/"+fl.Arg(0), func(path string) (string, error) {
			var p space.RepositoryDetail
			next, err := c.getPage(ctx, path, &p)
			if err != nil {
				return "", err
			}
			rows := append(d.PerManifest, p.PerManifest...)
			if d.Name == "" {
				d = p // the summary: the first page's
			}
			d.PerManifest = rows
			if full(len(d.PerManifest)) {
				d.PerManifest = d.PerManifest[:*limit]
				return "", nil
			}
			return next, nil
		})
		if err != nil {
			return fail(stderr, err)
		}
		if d.PerManifest == nil {
			d.PerManifest = []space.ManifestSpace{}
		}
		if *output == "json" {
			return printJSON(stdout, d)
		}
		fmt.Fprintf(stdout, "repository %s: %s referenced, %s unique (freed if deleted), %s shared; %d manifests (%d untagged), %d tags\n\n",
			d.Name, bytesStr(d.ReferencedBytes), bytesStr(d.UniqueBytes), bytesStr(d.SharedBytes), d.Manifests, d.Untagged, d.Tags)
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "DIGEST\tTAGS\tSIZE\tUNIQUE\tCREATED\t")
		for _, m := range d.PerManifest {
			tags := strings.Join(m.Tags, ",")
			if tags == "" {
				tags = "<untagged>"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", short(m.Digest), tags, bytesStr(m.Size), bytesStr(m.UniqueBytes), m.Created[:19])
		}
		tw.Flush()
		if *limit > 0 && int64(len(d.PerManifest)) < d.Manifests {
			fmt.Fprintf(stdout, "(the first %d of %d manifests: --limit)\n", len(d.PerManifest), d.Manifests)
		}
		return 0
	}
	var u space.Usage
	first := true
	err := pages("/api/v1/usage", func(path string) (string, error) {
		var p space.Usage
		next, err := c.getPage(ctx, path, &p)
		if err != nil {
			return "", err
		}
		rows := append(u.PerRepository, p.PerRepository...)
		if first {
			u, first = p, false // the totals: the first page's
		}
		u.PerRepository = rows
		if full(len(u.PerRepository)) {
			u.PerRepository = u.PerRepository[:*limit]
			return "", nil
		}
		return next, nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	if u.PerRepository == nil {
		u.PerRepository = []space.RepositorySpace{}
	}
	if *output == "json" {
		return printJSON(stdout, u)
	}
	fmt.Fprintf(stdout, "registry: %s stored (%d blobs), %s logical, dedup ratio %.2f; %d repositories, %d manifests (%d untagged), %d tags\n\n",
		bytesStr(u.PhysicalBytes), u.Blobs, bytesStr(u.LogicalBytes), u.DedupRatio, u.Repositories, u.Manifests, u.Untagged, u.Tags)
	if u.LimitBytes > 0 {
		fmt.Fprintf(stdout, "storage limit: %s, %.1f%% used (stowage quota shows repository quotas)\n\n",
			bytesStr(u.LimitBytes), 100*float64(u.PhysicalBytes)/float64(u.LimitBytes))
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "REPOSITORY\tREFERENCED\tUNIQUE\tSHARED\tMANIFESTS\tUNTAGGED\tTAGS\t")
	for _, r := range u.PerRepository {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t\n", r.Name, bytesStr(r.ReferencedBytes), bytesStr(r.UniqueBytes),
			bytesStr(r.SharedBytes), r.Manifests, r.Untagged, r.Tags)
	}
	tw.Flush()
	if *limit > 0 && int64(len(u.PerRepository)) < u.Repositories {
		fmt.Fprintf(stdout, "(the first %d of %d repositories: --limit)\n", len(u.PerRepository), u.Repositories)
	}
	return 0
}

// ---- deletes ----

const deleteUsage = `Usage: stowage delete REPOSITORY:TAG | REPOSITORY@DIGEST [flags]

Deletes an image: the manifest the tag or digest names, every tag pointing at
it, its referrers (signatures, SBOMs), and for an index the child manifests
nothing else uses. Layers shared with other images stay. Reports exactly how
many bytes garbage collection then frees; --dry-run only reports.
To remove only a tag, use 'stowage untag'; a whole repository, 'stowage delete-repo'.
`

const untagUsage = `Usage: stowage untag REPOSITORY:TAG [flags]

Removes one tag. The manifest stays (untagged if no other tag points at it),
so nothing is freed.
`

const deleteRepoUsage = `Usage: stowage delete-repo REPOSITORY [flags]

Deletes a repository: all its manifests and tags. Reports exactly how many
bytes garbage collection then frees (layers other repositories use stay).
`

func runDelete(ctx context.Context, kind string, args []string, stdout, stderr io.Writer) int {
	usage := map[string]string{"delete": deleteUsage, "untag": untagUsage, "delete-repo": deleteRepoUsage}[kind]
	var dry *bool
	var output *string
	fl, reg, ok := parseAdmin(kind, usage, args, stderr, func(fl *flag.FlagSet) {
		dry = fl.Bool("dry-run", false, "only report what would be deleted and freed")
		output = fl.String("output", "table", "table or json")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if fl.NArg() != 1 {
		return shortUsage(stderr, kind, usage, map[string]string{"delete": "want one image (REPOSITORY:TAG or REPOSITORY@DIGEST)",
			"untag": "want one tag (REPOSITORY:TAG)", "delete-repo": "want one REPOSITORY"}[kind])
	}
	path := map[string]string{"delete": "/api/v1/images/", "untag": "/api/v1/tags/", "delete-repo": "/api/v1/repositories/"}[kind]
	q := ""
	if *dry {
		q = "?dry_run=true"
	}
	var rep stowage.DeleteReport
	c := newClient(*reg, stdout, stderr)
	if err := c.do(ctx, http.MethodDelete, path+fl.Arg(0)+q, &rep); err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		return printJSON(stdout, rep)
	}
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
	}
	for _, m := range rep.Manifests {
		fmt.Fprintf(stdout, "%s manifest %s@%s (%s)", verb, rep.Repository, m.Digest, m.Reason)
		if len(m.Tags) > 0 {
			fmt.Fprintf(stdout, " tags: %s", strings.Join(m.Tags, ", "))
		}
		fmt.Fprintln(stdout)
	}
	if t := rep.Truncated; t != nil {
		fmt.Fprintf(stdout, "(%d manifests and %d tags in all; the list above shows the first)\n", t.Manifests, t.Tags)
	}
	if kind == "untag" {
		fmt.Fprintf(stdout, "%s tag %s\n", map[bool]string{true: "would remove", false: "removed"}[rep.DryRun], strings.Join(rep.Tags, ", "))
	}
	if rep.RecycledUntil != "" {
		fmt.Fprintf(stdout, "kept in the recycle bin until %s (stowage recycle-bin, stowage restore); its space is freed after that\n", rep.RecycledUntil)
		return 0
	}
	frees := "frees"
	if rep.DryRun {
		frees = "would free"
	}
	fmt.Fprintf(stdout, "%s %s in %d blobs once garbage collection runs (stowage gc)\n", frees, bytesStr(rep.BytesFreed), rep.BlobsFreed)
	return 0
}

// ---- retention and purge ----

const retentionUsage = `Usage: stowage retention show | set --enabled=true --days N | run [--dry-run] [flags]

The retention policy for untagged manifests: when enabled, a background job
deletes manifests that have had no tag for more than N days (0 to 365; 0 = at
once), counted from the moment they lost their last tag. Manifests that are
children of a tagged index are kept. 'run' applies it now.
`

func runRetention(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("retention", args, retentionUsage, stderr)
	if !ok {
		return code
	}
	var enabled, dry *bool
	var days *int
	var output *string
	fl, reg, ok := parseAdmin("retention "+sub, retentionUsage, args, stderr, func(fl *flag.FlagSet) {
		enabled = fl.Bool("enabled", true, "set: enable or disable the policy")
		days = fl.Int("days", 7, "set: days a manifest may stay untagged (0-365)")
		dry = fl.Bool("dry-run", false, "run: only report what would be deleted")
		output = fl.String("output", "table", "table or json")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	switch sub {
	case "show":
		if !noArguments(fl, "retention show", stderr) {
			return 2
		}
		var v struct {
			Policy  policy.Retention `json:"policy"`
			LastRun *policy.Run      `json:"lastRun"`
		}
		if err := c.do(ctx, http.MethodGet, "/api/v1/retention", &v); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, v)
		}
		state := "disabled"
		if v.Policy.Enabled {
			state = "enabled"
		}
		fmt.Fprintf(stdout, "retention of untagged manifests: %s, %d days\n", state, v.Policy.Days)
		if v.LastRun != nil {
			fmt.Fprintf(stdout, "last run %s: deleted %d manifests, frees %s%s\n", v.LastRun.At, v.LastRun.Manifests, bytesStr(v.LastRun.BytesFreed), errSuffix(v.LastRun.Error))
		} else {
			fmt.Fprintln(stdout, "it has not run yet")
		}
		return 0
	case "set":
		body := []byte(fmt.Sprintf(`{"enabled":%t,"days":%d}`, *enabled, *days))
		var out map[string]any
		if err := c.send(ctx, http.MethodPut, "/api/v1/retention", body, &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "retention of untagged manifests: enabled=%t, %d days\n", *enabled, *days)
		return 0
	case "run":
		q := ""
		if *dry {
			q = "?dry_run=true"
		}
		var run policy.Run
		if err := c.do(ctx, http.MethodPost, "/api/v1/retention/run"+q, &run); err != nil {
			return fail(stderr, err)
		}
		return printRun(stdout, run, *output)
	}
	return unknownSub(stderr, "retention", sub, retentionUsage)
}

const purgeUsage = `Usage: stowage purge --filter REPO_REGEX:TAG_REGEX [--filter …] [--ago 30d] [--keep N] [--untagged] [--dry-run]

Deletes tags whose repository and tag match a filter (both expressions must
match in full) and that were last pushed longer ago than --ago, keeping the
--keep newest of them per repository. With --untagged it also deletes the
manifests left without tags (and those untagged for longer than --ago).
Runs on the server with progress; reports what went and the bytes freed.
`

func runPurge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var filters multiFlag
	var ago, output *string
	var keep *int
	var untagged, dry *bool
	fl, reg, ok := parseAdmin("purge", purgeUsage, args, stderr, func(fl *flag.FlagSet) {
		fl.Var(&filters, "filter", "REPO_REGEX:TAG_REGEX (repeatable)")
		ago = fl.String("ago", "0s", "only tags last pushed longer ago than this (e.g. 30d, 12h, 1d12h)")
		keep = fl.Int("keep", 0, "per repository, keep this many of the newest matching tags")
		untagged = fl.Bool("untagged", false, "also delete manifests left without tags")
		dry = fl.Bool("dry-run", false, "only report what would be deleted")
		output = fl.String("output", "table", "table or json")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if len(filters) == 0 {
		fmt.Fprintln(stderr, "stowage purge: at least one --filter REPO_REGEX:TAG_REGEX is needed")
		return 2
	}
	q := url.Values{"filter": filters, "ago": {*ago}, "keep": {fmt.Sprint(*keep)}}
	if *untagged {
		q.Set("untagged", "true")
	}
	if *dry {
		q.Set("dry_run", "true")
	}
	var run policy.Run
	if err := newClient(*reg, stdout, stderr).job(ctx, "/api/v1/purge?"+q.Encode(), &run); err != nil {
		return fail(stderr, err)
	}
	return printRun(stdout, run, *output)
}

const purgePolicyUsage = `Usage: stowage purge-policy list | set NAME --filter R:T [--ago 30d] [--keep N] [--untagged] --every 24h | delete NAME

Scheduled purges: 'stowage serve' runs each policy every --every (checked
each minute), with the same options as 'stowage purge', and records its last run.
`

func runPurgePolicy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("purge-policy", args, purgePolicyUsage, stderr)
	if !ok {
		return code
	}
	var filters multiFlag
	var ago, every, output *string
	var keep *int
	var untagged *bool
	fl, reg, ok := parseAdmin("purge-policy "+sub, purgePolicyUsage, args, stderr, func(fl *flag.FlagSet) {
		output = outputFlag(fl)
		fl.Var(&filters, "filter", "REPO_REGEX:TAG_REGEX (repeatable)")
		ago = fl.String("ago", "", "only tags last pushed longer ago than this")
		keep = fl.Int("keep", 0, "per repository, keep this many of the newest matching tags")
		untagged = fl.Bool("untagged", false, "also delete manifests left without tags")
		every = fl.String("every", "24h", "how often the policy runs (e.g. 24h, 7d)")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "purge-policy", *output) {
		return 2
	}
	c := newClient(*reg, stdout, stderr)
	switch sub {
	case "list":
		if !noArguments(fl, "purge-policy list", stderr) {
			return 2
		}
		var out struct{ Policies []policy.PurgePolicy }
		if err := c.do(ctx, http.MethodGet, "/api/v1/purge-policies", &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			if out.Policies == nil {
				out.Policies = []policy.PurgePolicy{}
			}
			return printJSON(stdout, map[string]any{"policies": out.Policies})
		}
		if len(out.Policies) == 0 {
			fmt.Fprintln(stdout, "no purge policies")
		}
		for _, p := range out.Policies {
			fmt.Fprintf(stdout, "%s: every %s, filters %s, ago %s, keep %d, untagged %t", p.Name, p.Every, strings.Join(p.Filters, " "), p.Ago, p.Keep, p.Untagged)
			if p.LastRun != nil {
				fmt.Fprintf(stdout, "; last run %s: %d tags, %d manifests, frees %s%s", p.LastRun.At, p.LastRun.Tags, p.LastRun.Manifests, bytesStr(p.LastRun.BytesFreed), errSuffix(p.LastRun.Error))
			}
			fmt.Fprintln(stdout)
		}
		return 0
	case "set":
		if fl.NArg() != 1 {
			return shortUsage(stderr, "purge-policy set", purgePolicyUsage, "want one NAME")
		}
		body, _ := json.Marshal(policy.PurgePolicy{Filters: filters, Ago: *ago, Keep: *keep, Untagged: *untagged, Every: *every})
		var out map[string]any
		if err := c.send(ctx, http.MethodPut, "/api/v1/purge-policies/"+fl.Arg(0), body, &out); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, out)
		}
		fmt.Fprintf(stdout, "purge policy %s set: runs every %s\n", fl.Arg(0), *every)
		return 0
	default:
		if fl.NArg() != 1 {
			return shortUsage(stderr, "purge-policy delete", purgePolicyUsage, "want one NAME")
		}
		if err := c.do(ctx, http.MethodDelete, "/api/v1/purge-policies/"+fl.Arg(0), nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]any{"deleted": fl.Arg(0)})
		}
		fmt.Fprintf(stdout, "purge policy %s deleted\n", fl.Arg(0))
		return 0
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func printRun(stdout io.Writer, run policy.Run, output string) int {
	if output == "json" {
		return printJSON(stdout, run)
	}
	verb := "deleted"
	if run.DryRun {
		verb = "would delete"
	}
	cut := run.RepositoriesNotListed > 0
	for _, rep := range run.Repositories {
		for _, t := range rep.Tags {
			fmt.Fprintf(stdout, "%s tag %s:%s\n", verb, rep.Repository, t)
		}
		for _, m := range rep.Manifests {
			fmt.Fprintf(stdout, "%s manifest %s@%s (%s)\n", verb, rep.Repository, m.Digest, m.Reason)
		}
		cut = cut || rep.Truncated != nil
	}
	if cut {
		fmt.Fprintf(stdout, "(the list above stops there; the totals below count everything)\n")
	}
	frees := "frees"
	if run.DryRun {
		frees = "would free"
	}
	fmt.Fprintf(stdout, "%d tags, %d manifests; %s %s in %d blobs once garbage collection runs%s\n",
		run.Tags, run.Manifests, frees, bytesStr(run.BytesFreed), run.BlobsFreed, errSuffix(run.Error))
	return 0
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (error: " + e + ")"
}

// ---- locks ----

const lockUsage = `Usage: stowage lock REPOSITORY | REPOSITORY:TAG | REPOSITORY@DIGEST [--write=BOOL] [--delete=BOOL] [--read=BOOL] [--list=BOOL]

Shows or changes the locks (ACR's changeable attributes) of a repository, a
tag or a manifest. --write=false: no pushes into the repository, the tag
cannot be moved. --delete=false: no deletes (retention and purge pass over
it). --read=false: no pulls. --list=false: hidden from listings. Flags not
given stay as they are; with no flag, the current state is shown.
`

const immutabilityUsage = `Usage: stowage immutability show | set [RULE ...] [flags]

Registry-wide tag immutability: a tag matching a rule REPO_REGEX:TAG_REGEX
(both matched in full) cannot be moved to another manifest once pushed.
'set' replaces all rules; 'set' with no rule removes them.
`

func runLock(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var write, del, read, list *bool
	var output *string
	fl, reg, ok := parseAdmin("lock", lockUsage, args, stderr, func(fl *flag.FlagSet) {
		output = outputFlag(fl)
		write = fl.Bool("write", true, "writeEnabled")
		del = fl.Bool("delete", true, "deleteEnabled")
		read = fl.Bool("read", true, "readEnabled")
		list = fl.Bool("list", true, "listEnabled")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "lock", *output) {
		return 2
	}
	if fl.NArg() != 1 {
		return shortUsage(stderr, "lock", lockUsage, "want one repository, tag or manifest")
	}
	body := map[string]bool{}
	fl.Visit(func(f *flag.Flag) {
		name := map[string]string{"write": "writeEnabled", "delete": "deleteEnabled", "read": "readEnabled", "list": "listEnabled"}[f.Name]
		v := map[string]*bool{"write": write, "delete": del, "read": read, "list": list}[f.Name]
		if name != "" {
			body[name] = *v
		}
	})
	c := newClient(*reg, stdout, stderr)
	var out struct {
		Target     string          `json:"target"`
		Attributes map[string]bool `json:"changeableAttributes"`
	}
	var err error
	if len(body) == 0 {
		err = c.do(ctx, http.MethodGet, "/api/v1/locks/"+fl.Arg(0), &out)
	} else {
		b, _ := json.Marshal(body)
		err = c.send(ctx, http.MethodPatch, "/api/v1/locks/"+fl.Arg(0), b, &out)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		if out.Target == "" {
			out.Target = fl.Arg(0)
		}
		return printJSON(stdout, out)
	}
	fmt.Fprintf(stdout, "%s: writeEnabled=%t deleteEnabled=%t readEnabled=%t listEnabled=%t\n", fl.Arg(0),
		out.Attributes["writeEnabled"], out.Attributes["deleteEnabled"], out.Attributes["readEnabled"], out.Attributes["listEnabled"])
	return 0
}

func runImmutability(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("immutability", args, immutabilityUsage, stderr)
	if !ok {
		return code
	}
	var output *string
	fl, reg, ok := parseAdmin("immutability "+sub, immutabilityUsage, args, stderr, func(fl *flag.FlagSet) { output = outputFlag(fl) })
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "immutability", *output) {
		return 2
	}
	c := newClient(*reg, stdout, stderr)
	var out struct {
		Rules []string `json:"rules"`
	}
	var err error
	if sub == "show" {
		if !noArguments(fl, "immutability show", stderr) {
			return 2
		}
		err = c.do(ctx, http.MethodGet, "/api/v1/immutability", &out)
	} else {
		rules := fl.Args()
		if rules == nil {
			rules = []string{}
		}
		b, _ := json.Marshal(map[string]any{"rules": rules})
		err = c.send(ctx, http.MethodPut, "/api/v1/immutability", b, &out)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		if out.Rules == nil {
			out.Rules = []string{}
		}
		return printJSON(stdout, out)
	}
	if len(out.Rules) == 0 {
		fmt.Fprintln(stdout, "no immutability rules: every tag can be moved (unless write-locked)")
	}
	for _, r := range out.Rules {
		fmt.Fprintln(stdout, "immutable:", r)
	}
	return 0
}

// ---- soft delete ----

const softDeleteUsage = `Usage: stowage soft-delete [show] | set --enabled=BOOL --days N [flags]

Soft delete keeps deleted manifests in a recycle bin for N days (1 to 90):
they can be listed ('stowage recycle-bin') and restored ('stowage restore'),
and their space is reclaimed only after they expire. Off by default.
`

const recycleUsage = `Usage: stowage recycle-bin [REPOSITORY] [flags]

Lists soft-deleted manifests, newest first, with the id to restore them by.
`

const restoreUsage = `Usage: stowage restore ID [flags]

Restores a soft-deleted manifest with its tags (tags reused since are left
alone). Restore an index's children before the index.
`

func runSoftDelete(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("soft-delete", args, softDeleteUsage, stderr)
	if !ok {
		return code
	}
	var enabled *bool
	var days *int
	var output *string
	fl, reg, ok := parseAdmin("soft-delete "+sub, softDeleteUsage, args, stderr, func(fl *flag.FlagSet) {
		output = outputFlag(fl)
		enabled = fl.Bool("enabled", true, "set: turn soft delete on or off")
		days = fl.Int("days", 7, "set: days deleted manifests stay restorable (1-90)")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	if badOutput(stderr, "soft-delete", *output) {
		return 2
	}
	var out struct {
		Policy stowage.SoftDeletePolicy `json:"policy"`
	}
	var err error
	if sub == "show" {
		if !noArguments(fl, "soft-delete show", stderr) {
			return 2
		}
		err = c.do(ctx, http.MethodGet, "/api/v1/soft-delete", &out)
	} else {
		body := []byte(fmt.Sprintf(`{"enabled":%t,"days":%d}`, *enabled, *days))
		err = c.send(ctx, http.MethodPut, "/api/v1/soft-delete", body, &out)
	}
	if err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		return printJSON(stdout, out)
	}
	if out.Policy.Enabled {
		fmt.Fprintf(stdout, "soft delete: enabled; deleted manifests stay restorable for %d days\n", out.Policy.Days)
	} else {
		fmt.Fprintln(stdout, "soft delete: disabled; deletes are final")
	}
	return 0
}

// recycledEntry is an entry of GET /api/v1/recycle-bin, with the API's
// field names (lowerCamel), which --output json passes on.
type recycledEntry struct {
	ID          int64    `json:"id"`
	Repository  string   `json:"repository"`
	Digest      string   `json:"digest"`
	MediaType   string   `json:"mediaType"`
	Tags        []string `json:"tags"`
	DeletedTime string   `json:"deletedTime"`
	ExpiresTime string   `json:"expiresTime"`
}

func runRecycleBin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var output *string
	fl, reg, ok := parseAdmin("recycle-bin", recycleUsage, args, stderr, func(fl *flag.FlagSet) {
		output = fl.String("output", "table", "table or json")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	var out struct {
		Entries []recycledEntry `json:"entries"`
	}
	if err := newClient(*reg, stdout, stderr).do(ctx, http.MethodGet, "/api/v1/recycle-bin/"+fl.Arg(0), &out); err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		if out.Entries == nil {
			out.Entries = []recycledEntry{}
		}
		return printJSON(stdout, out)
	}
	if len(out.Entries) == 0 {
		fmt.Fprintln(stdout, "the recycle bin is empty")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMANIFEST\tTAGS\tDELETED\tEXPIRES")
	for _, e := range out.Entries {
		fmt.Fprintf(tw, "%d\t%s@%s\t%s\t%s\t%s\n", e.ID, e.Repository, short(stowage.Digest(e.Digest)), strings.Join(e.Tags, ","), e.DeletedTime, e.ExpiresTime)
	}
	tw.Flush()
	return 0
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var output *string
	fl, reg, ok := parseAdmin("restore", restoreUsage, args, stderr, func(fl *flag.FlagSet) { output = outputFlag(fl) })
	if !ok {
		return exitCode(fl, ok)
	}
	if badOutput(stderr, "restore", *output) {
		return 2
	}
	if fl.NArg() != 1 {
		return shortUsage(stderr, "restore", restoreUsage, "want one ID (stowage recycle-bin lists them)")
	}
	var rep recyclebin.RestoreReport
	if err := newClient(*reg, stdout, stderr).send(ctx, http.MethodPost, "/api/v1/recycle-bin/"+fl.Arg(0)+"/restore", nil, &rep); err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		return printJSON(stdout, rep)
	}
	fmt.Fprintf(stdout, "restored %s@%s", rep.Repository, rep.Digest)
	if len(rep.Tags) > 0 {
		fmt.Fprintf(stdout, " with tags %s", strings.Join(rep.Tags, ", "))
	}
	if len(rep.TagsSkipped) > 0 {
		fmt.Fprintf(stdout, " (tags now used by other manifests, left alone: %s)", strings.Join(rep.TagsSkipped, ", "))
	}
	fmt.Fprintln(stdout)
	return 0
}

// ---- gc ----

const gcUsage = `Usage: stowage gc [flags]

Runs garbage collection now, online (pushes and pulls go on): deletes blobs
no manifest references whose grace period and lease are over, abandoned
uploads, and objects a crash left behind. Shows progress and a report.
`

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var dry, sweep *bool
	var minAge, output *string
	fl, reg, ok := parseAdmin("gc", gcUsage, args, stderr, func(fl *flag.FlagSet) {
		dry = fl.Bool("dry-run", false, "only report what would be freed")
		sweep = fl.Bool("sweep", true, "make this run a full pass: read every blob row (not only the queue of what changed since the last run) and walk storage for objects a crash left without a database row; the part whose cost is the registry's size, which --sweep=false leaves out")
		output = fl.String("output", "table", "table or json")
		minAge = fl.String("min-age", "", "override grace period and lease for this run (0s: collect everything unreferenced now; only when no push is in flight)")
	})
	if !ok {
		return exitCode(fl, ok)
	}
	if !noArguments(fl, "gc", stderr) {
		return 2
	}
	q := url.Values{}
	if *dry {
		q.Set("dry_run", "true")
	}
	if !*sweep {
		q.Set("sweep", "false")
	}
	if *minAge != "" {
		if _, err := time.ParseDuration(*minAge); err != nil {
			fmt.Fprintf(stderr, "stowage gc: --min-age %q: want a duration such as 0s or 30m\n", *minAge)
			return 2
		}
		q.Set("min_age", *minAge)
	}
	c := newClient(*reg, stdout, stderr)
	var r gc.Report
	if err := c.job(ctx, "/api/v1/gc?"+q.Encode(), &r); err != nil {
		return fail(stderr, err)
	}
	if *output == "json" {
		return printJSON(stdout, r)
	}
	verb := "freed"
	if r.DryRun {
		verb = "would free"
	}
	leftovers := fmt.Sprintf("%d leftover objects (%s)", r.OrphansDeleted, bytesStr(r.OrphanBytes))
	if !r.Swept {
		leftovers = "storage not walked for leftover objects"
		if r.LastSweep != "" {
			leftovers += " (last walk " + r.LastSweep + ")"
		}
	}
	fmt.Fprintf(stdout, "garbage collection %s %s: %d blobs; %d abandoned uploads; %s; took %s\n",
		verb, bytesStr(r.BytesFreed), r.BlobsDeleted, r.UploadsExpired, leftovers, r.Duration)
	if w := r.Waiting; w != nil {
		fmt.Fprintf(stdout, "%d blobs (%s) are waiting for the grace period or a lease (%s) — run `stowage gc --min-age 0s` to collect them now (only when no push is in flight)\n",
			w.Blobs, bytesStr(w.Bytes), waitingWhen(w.Earliest, w.Latest))
	}
	if rc := r.Recycled; rc != nil {
		fmt.Fprintf(stdout, "%d blobs (%s) are kept only by the recycle bin (soft delete, %d entries; %s, when the entries expire) — stowage recycle-bin lists them, stowage restore ID brings one back\n",
			rc.Blobs, bytesStr(rc.Bytes), rc.Entries, waitingWhen(rc.Earliest, rc.Latest))
	}
	return 0
}

// waitingWhen says when waiting blobs become collectable: "until 14:05
// UTC", or "collectable from 13:05 UTC, all by 14:05 UTC".
func waitingWhen(earliest, latest string) string {
	e, err1 := time.Parse(time.RFC3339, earliest)
	l, err2 := time.Parse(time.RFC3339, latest)
	if err1 != nil || err2 != nil {
		return "until " + latest
	}
	format := func(t time.Time) string {
		t = t.UTC()
		if t.Format(time.DateOnly) == time.Now().UTC().Format(time.DateOnly) {
			return t.Format("15:04 UTC")
		}
		return t.Format("2006-01-02 15:04 UTC")
	}
	if format(e) == format(l) {
		return "until " + format(l)
	}
	return "collectable from " + format(e) + ", all by " + format(l)
}

// job POSTs to a management endpoint that streams JSON lines, draws its
// progress on stderr, and decodes its final report into out.
func (c *client) job(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.roundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	bar := newProgressBar(c.stderr)
	defer bar.done()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var line struct {
			Progress *struct {
				Phase       string
				Done, Total int64
			}
			Report json.RawMessage
			Error  string
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			continue
		}
		switch {
		case line.Progress != nil:
			bar.show(line.Progress.Phase, line.Progress.Done, line.Progress.Total)
		case line.Error != "":
			return errors.New(line.Error)
		case line.Report != nil:
			return json.Unmarshal(line.Report, out)
		}
	}
	return fmt.Errorf("the registry closed the connection before the job finished: %v", sc.Err())
}

// progressBar draws one line on a terminal: [#####.....] phase 5/10. Not
// on a terminal (CI logs, pipes), it draws nothing and prints one summary
// line at the end: the last count of each phase.
type progressBar struct {
	w      io.Writer
	tty    bool
	drawn  bool
	phases []string
	last   map[string]string
}

func newProgressBar(w io.Writer) *progressBar {
	return &progressBar{w: w, tty: isTerminal(w), last: map[string]string{}}
}

func (p *progressBar) show(phase string, done, total int64) {
	if !p.tty {
		if _, ok := p.last[phase]; !ok {
			p.phases = append(p.phases, phase)
		}
		p.last[phase] = fmt.Sprintf("%s %d/%d", phase, done, total)
		return
	}
	const width = 30
	fill := width
	if total > 0 {
		fill = int(min(done, total) * width / total)
	}
	fmt.Fprintf(p.w, "\r%-12s [%s%s] %d/%d ", phase, strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, total)
	p.drawn = true
}

func (p *progressBar) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
	if !p.tty && len(p.phases) > 0 {
		var parts []string
		for _, ph := range p.phases {
			parts = append(parts, p.last[ph])
		}
		fmt.Fprintln(p.w, "progress:", strings.Join(parts, "; "))
	}
}

// ---- formatting ----

func bytesStr(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func short(d stowage.Digest) string {
	s := string(d)
	if len(s) > 19 {
		return s[:19]
	}
	return s
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}
