package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/mgmt"
)

const keysUsage = `Usage: stowage keys status | rotate [--rewrap-only] | retire VERSION [flags]

Manages the key-encryption key (KEK) of encryption at rest. Every stored
object has its own data key; the data keys are wrapped by a KEK version and
kept in the metadata database.

  status   the key provider, the current version, the versions held, and
           how many data keys each version wraps
  rotate   make a new KEK version current, then rewrap every data key onto
           it, online, in batches, with a progress bar. No blob is
           rewritten. With a key file, the new version is kept in the
           metadata database, wrapped by the key file's current version, so
           every node sharing the database uses it within a second; the file
           is not written. --rewrap-only skips the new version: use it after
           the current version changed in a KMS, the key variable or the file.
  retire   remove an old version once no data key uses it (status shows 0
           for it after a rotation); a version kept in the database is
           removed for every node. The key file's version that wraps them
           cannot be retired while they exist.

See docs/encryption.md.
`

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, args, code, ok := subcommand("keys", args, keysUsage, stderr)
	if !ok {
		return code
	}
	var rewrapOnly *bool
	var output *string
	fl, reg, ok := parseAdmin("keys "+sub, keysUsage, args, stderr, func(fl *flag.FlagSet) {
		rewrapOnly = fl.Bool("rewrap-only", false, "rotate: rewrap onto the current version without adding one")
		output = outputFlag(fl)
	})
	if !ok {
		return exitCode(fl, ok)
	}
	c := newClient(*reg, stdout, stderr)
	switch sub {
	case "status":
		if !noArguments(fl, "keys status", stderr) {
			return 2
		}
		var v keysView
		if err := c.do(ctx, http.MethodGet, "/api/v1/keys", &v); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, v)
		}
		if v.Status == nil {
			fmt.Fprintln(stdout, "encryption at rest is off (encryption: none)")
			return 0
		}
		st := v.Status
		fmt.Fprintf(stdout, "provider: %s\ncurrent:  %s\n", st.Provider, st.Current)
		count := map[string]int64{}
		for _, d := range st.DataKeys {
			count[d.KeyVersion.String()] = d.Count
		}
		fmt.Fprintln(stdout, "versions:")
		seen := map[string]bool{}
		versions := st.Versions
		if len(versions) == 0 {
			// A provider that does not list its versions (a key from an
			// environment variable, a KMS) holds at least the current one.
			versions = []stowage.KeyVersion{st.Current}
		}
		for _, kv := range versions {
			seen[kv.String()] = true
			cur := ""
			if kv == st.Current {
				cur = " (current)"
			}
			fmt.Fprintf(stdout, "  %-36s wraps %d data keys%s\n", kv, count[kv.String()], cur)
		}
		for _, d := range st.DataKeys {
			if !seen[d.KeyVersion.String()] {
				fmt.Fprintf(stdout, "  %-36s wraps %d data keys%s\n", d.KeyVersion, d.Count, map[bool]string{true: " (current)", false: ""}[d.KeyVersion == st.Current])
			}
		}
		return 0
	case "rotate":
		q := ""
		if *rewrapOnly {
			q = "?rewrap_only=true"
		}
		var p mgmt.KeyRotation
		if err := c.job(ctx, "/api/v1/keys/rotate"+q, &p); err != nil {
			return fail(stderr, err)
		}
		rep := rotateReport{Current: mgmt.KeyVersionOf(p.Current), Rewrapped: p.Rewrapped, Total: p.Total, Done: p.Done}
		if st, err := keyStatus(ctx, c); err == nil && st != nil && !*rewrapOnly {
			if _, path, ok := strings.Cut(st.Provider, "key file "); ok {
				// The new version lives in the metadata database, wrapped by
				// a version of the key file, which every node holds: no
				// node's key file needs the new version (docs/encryption.md).
				rep.BackUp = path
				rep.Note = fmt.Sprintf("back up the key file %s (unchanged) apart from the database backups: the metadata database now holds %s, wrapped by the key file, and neither opens without the other; every node sharing the database uses it within a second, no key file needs copying", path, p.Current)
			}
		}
		if *output == "json" {
			return printJSON(stdout, rep)
		}
		fmt.Fprintf(stdout, "current key: %s; rewrapped %d data keys; none is wrapped by another version\n", p.Current, p.Rewrapped)
		if rep.Note != "" {
			fmt.Fprintln(stdout, rep.Note)
		}
		return 0
	case "retire":
		if fl.NArg() != 1 {
			return shortUsage(stderr, "keys retire", keysUsage, "want one VERSION (stowage keys status lists them)")
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(fl.Arg(0), "v"), 10, 32)
		if err != nil {
			fmt.Fprintf(stderr, "stowage keys retire: %q: want a version number\n", fl.Arg(0))
			return 2
		}
		if st, err := keyStatus(ctx, c); err == nil && st != nil && uint64(st.Current.Version) == v {
			fmt.Fprintf(stderr, "stowage keys retire: %d is the current version; rotate first (stowage keys rotate), then retire %d\n", v, v)
			return 1
		}
		if err := c.do(ctx, http.MethodDelete, fmt.Sprintf("/api/v1/keys/versions/%d", v), nil); err != nil {
			return fail(stderr, err)
		}
		if *output == "json" {
			return printJSON(stdout, map[string]uint64{"retired": v})
		}
		fmt.Fprintf(stdout, "retired version %d\n", v)
		return 0
	}
	return unknownSub(stderr, "keys", sub, keysUsage)
}

// rotateReport is `stowage keys rotate --output json`.
type rotateReport struct {
	Current   mgmt.KeyVersionJSON `json:"current"`
	Rewrapped int64               `json:"rewrapped"`
	Total     int64               `json:"total"`
	Done      bool                `json:"done"`
	BackUp    string              `json:"backUpKeyFile,omitempty"` // the key file to back up (with a key file provider)
	Note      string              `json:"note,omitempty"`
}

// keysView is GET /api/v1/keys.
type keysView struct {
	Encryption string          `json:"encryption"`
	Status     *mgmt.KeyStatus `json:"status"`
}

// keyStatus reads the key status (nil if encryption is off).
func keyStatus(ctx context.Context, c *client) (*mgmt.KeyStatus, error) {
	var v keysView
	if err := c.do(ctx, http.MethodGet, "/api/v1/keys", &v); err != nil {
		return nil, err
	}
	return v.Status, nil
}
