package main

import (
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/stowage/stowage/config"
)

// maxArgs declares how many positional arguments each command and
// subcommand takes at most (-1: any number). A word more is refused with
// exit 2 before anything is done: `stowage purge --filter X dry-run`
// deleted tags, `keys rotate extra` rotated (outside review). parseAdmin
// applies it to every admin command by the name it is given; the local
// commands (serve, migrate, …) call tooManyArgs themselves. Each command
// of main.go's run and each subcommand of the subcommands table must have a
// line (TestStrayArguments checks it); a group whose subcommand is an
// argument of one parse (quota, anonymous-pull, completion) has a line for
// the group too.
var maxArgs = map[string]int{
	"serve": 0, "usage": 1, "delete": 1, "untag": 1, "delete-repo": 1, "gc": 0,
	"purge": 0, "export": 0, "import": 1, "lock": 1, "recycle-bin": 1, "restore": 1,
	"scrub": 0, "migrate": 0, "migrate-metadata": 0, "whoami": 0, "events": 0,
	"healthcheck": 0, "version": 0, "--version": 0, "-version": 0,
	"help": 1, "-h": 1, "-help": 1, "--help": 1,
	"cache-rule create": 1, "cache-rule list": 0, "cache-rule show": 1, "cache-rule delete": 1,
	"retention show": 0, "retention set": 0, "retention run": 0,
	"purge-policy list": 0, "purge-policy set": 1, "purge-policy delete": 1,
	"immutability show": 0, "immutability set": -1,
	"soft-delete show": 0, "soft-delete set": 0,
	"keys status": 0, "keys rotate": 0, "keys retire": 1,
	"storage status": 0, "storage rebalance": 0,
	"quota": 3, "quota show": 1, "quota set": 2, "quota remove": 1,
	"user create": 1, "user list": 0, "user show": 1, "user delete": 1, "user passwd": 1, "user update": 1,
	"scope-map create": 1, "scope-map list": 0, "scope-map show": 1, "scope-map delete": 1,
	"token create": 1, "token list": 0, "token show": 1, "token update": 1, "token disable": 1,
	"token enable": 1, "token delete": 1, "token password": 1, "token delete-password": 1,
	"anonymous-pull": 1, "anonymous-pull on": 0, "anonymous-pull off": 0,
	"webhook create": 1, "webhook list": 0, "webhook show": 1, "webhook update": 1,
	"webhook delete": 1, "webhook ping": 1, "webhook events": 1,
	"replication status": 1, "replication backfill": 1,
	"completion": 1, "completion bash": 0, "completion zsh": 0, "completion fish": 0,
}

// tooManyArgs reports (and returns true) when args, the positional
// arguments of the command name, are more than maxArgs allows: one line
// naming the first word too many and, when it resembles one of fl's flags,
// that flag; one line pointing at --help. The caller exits 2.
func tooManyArgs(fl *flag.FlagSet, name string, args []string, stderr io.Writer) bool {
	max, ok := maxArgs[name]
	if !ok || max < 0 || len(args) <= max {
		return false
	}
	unexpectedArg(fl, name, args[max], stderr)
	return true
}

func unexpectedArg(fl *flag.FlagSet, name, extra string, stderr io.Writer) {
	var flags []string
	if fl != nil {
		fl.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
	}
	hint := ""
	if s := config.Closest(strings.TrimLeft(extra, "-"), flags); s != "" {
		hint = "; did you mean --" + s + "?"
	}
	fmt.Fprintf(stderr, "stowage %s: unexpected argument %q%s\nRun 'stowage %s --help' for its flags.\n", name, extra, hint, name)
}
