package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/stowage/stowage/config"
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
	if err := parseFlags(fl, args, stderr); err != nil {
		helpAsked = errors.Is(err, flag.ErrHelp)
		return exitCode(fl, false)
	}
	if tooManyArgs(fl, "version", fl.Args(), stderr) {
		return 2
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

// parseFlags parses args into fl. An unknown or malformed flag gets one
// line naming it and one pointing at --help, not the whole help; -h/--help
// prints the help (fl.Usage) as before.
func parseFlags(fl *flag.FlagSet, args []string, stderr io.Writer) error {
	usage, out := fl.Usage, fl.Output()
	fl.Usage = func() {}
	fl.SetOutput(io.Discard)
	err := fl.Parse(args)
	fl.Usage = usage
	fl.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage()
	case err != nil && isShortOutput(err) && fl.Lookup("o") == nil:
		// -o is not an alias of --output: a command may take -o for a file
		// (export -o FILE). One line naming the flag to use.
		if fl.Lookup("output") != nil {
			fmt.Fprintf(stderr, "stowage %s: -o is not a flag of this command: for JSON output use --output json\n", fl.Name())
		} else {
			fmt.Fprintf(stderr, "stowage %s: -o is not a flag of this command (commands that print take --output json; this one has no --output)\n", fl.Name())
		}
	case err != nil:
		hint := ""
		if bad, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
			var names []string
			fl.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
			if s := config.Closest(bad, names); s != "" {
				hint = "; did you mean --" + s + "?"
			}
		}
		fmt.Fprintf(stderr, "stowage %s: %v%s\nRun 'stowage %s --help' for its flags.\n", fl.Name(), err, hint, fl.Name())
	}
	return err
}

// isShortOutput reports whether a parse error is about -o (-o json, -o=json).
func isShortOutput(err error) bool {
	return strings.HasSuffix(err.Error(), "flag provided but not defined: -o")
}

// unknownCommand says so, with the nearest command, in two lines.
func unknownCommand(stderr io.Writer, cmd string) int {
	hint := ""
	if s := config.Closest(cmd, commandNames()); s != "" {
		hint = "; did you mean " + s + "?"
	} else if s := anagram(cmd, commandNames()); s != "" {
		hint = "; did you mean " + s + "?"
	}
	fmt.Fprintf(stderr, "stowage: unknown command %q%s\nRun 'stowage help' for the list of commands.\n", cmd, hint)
	return 2
}

// anagram returns the name in known that has the letters of s in another
// order (sever, serve: a letter moved further than one place, which the
// edit distance counts 2), else "".
func anagram(s string, known []string) string {
	sorted := func(w string) string {
		b := []byte(strings.ToLower(w))
		slices.Sort(b)
		return string(b)
	}
	if len(s) < 3 {
		return ""
	}
	for _, k := range known {
		if k != s && sorted(k) == sorted(s) {
			return k
		}
	}
	return ""
}
