package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// outputFlag adds --output (table or json) to a command's flags.
func outputFlag(fl *flag.FlagSet) *string {
	return fl.String("output", "table", "table or json (for scripts)")
}

// badOutput refuses an --output value a command does not know; it reports
// whether it did.
func badOutput(stderr io.Writer, cmd, v string, known ...string) bool {
	if len(known) == 0 {
		known = []string{"table", "json"}
	}
	for _, k := range known {
		if v == k {
			return false
		}
	}
	fmt.Fprintf(stderr, "stowage %s: --output %q: want %s\n", cmd, v, strings.Join(known, " or "))
	return true
}

// isTerminal reports whether w is a terminal (a character device), where a
// progress bar redrawn with \r makes sense; a pipe or a file gets one
// summary line instead.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// versionInfo is `stowage version --output json`.
type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go,omitempty"`
}

func buildInfo() versionInfo {
	v := versionInfo{Version: version}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Commit = s.Value
			}
		}
		v.Go = bi.GoVersion
	}
	return v
}

const versionUsage = `Usage: stowage version [--output json]

Prints the version, the commit it was built from and the Go version.
`

func runVersion(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("version", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, versionUsage, "\nFlags:\n"); fl.PrintDefaults() }
	output := outputFlag(fl)
	if err := fl.Parse(args); err != nil {
		helpAsked = errors.Is(err, flag.ErrHelp)
		return exitCode(fl, false)
	}
	if badOutput(stderr, "version", *output) {
		return 2
	}
	if *output == "json" {
		return printJSON(stdout, buildInfo())
	}
	fmt.Fprintln(stdout, "stowage", versionString())
	return 0
}
