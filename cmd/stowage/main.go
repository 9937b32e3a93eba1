// Command stowage is the Stowage container registry: `stowage serve` runs it,
// the other subcommands help operate it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `Stowage is an OCI container registry that manages images: layers stored once
and shared by every repository, deletes that really free space, exact usage.

Usage:
  stowage <command> [flags]

Commands:
  serve        run the registry (default: 127.0.0.1:5000, data in ./stowage-data)
  usage        what uses space: registry, repositories, manifests (exact, deduplicated)
  delete       delete an image (REPO:TAG or REPO@DIGEST) and its tags; --dry-run
  untag        remove one tag (REPO:TAG); the manifest stays
  delete-repo  delete a repository with all its manifests and tags
  gc           collect garbage now, online, with a progress bar and a report
  import       copy an image from another registry, server-side: import --from REGISTRY/REPO:TAG
  cache-rule   pull-through cache rules: create, list, show, delete
  retention    show, set or run the retention policy for untagged manifests
  purge        delete tags (and untagged manifests) by filter, age and keep count
  purge-policy list, set or delete scheduled purges
  export       write images (with referrers) to an OCI layout or tar; --since for changes
  import       push an OCI layout or tar (from export, skopeo, crane, oras) into the registry
  lock         show or change the locks of a repository, tag or manifest
  immutability show or set the registry-wide tag immutability rules
  soft-delete  show or set soft delete (a recycle bin for deleted manifests)
  recycle-bin  list soft-deleted manifests
  restore      restore a soft-deleted manifest
  keys         encryption keys: status, rotate (online rewrap), retire
  scrub        read every blob back, verify it, repair bad copies from good ones
  storage      storage topology and copy health; rebalance after adding a shard
  migrate      apply the metadata database's schema migrations (prints the versions)
  migrate-metadata  copy the embedded SQLite metadata into PostgreSQL (scale-out)
  quota        storage limit and per-repository quotas: show, set, remove
  user         users (access control): create, list, delete, passwd, update
  scope-map    scope maps (repository patterns and actions): create, list, show, delete
  token        repository-scoped tokens: create, list, show, disable, enable, delete, password
  anonymous-pull  show or switch anonymous pull (access control)
  whoami       who the admin commands act as
  events       the change feed and audit trail: every change, by cursor; --follow
  webhook      webhooks: tell other systems about pushes, deletes, ...: create, list, show, update, delete, ping, events
  replication  geo-replication: status (per peer lag and errors, or where an image is), backfill a peer
  healthcheck  exit 0 if the local registry answers /healthz (for container health checks)
  version      print the version
  completion   print a shell completion script: bash, zsh or fish
  help         show this help, or help for a command: stowage help gc

The admin commands talk to a running registry (--registry, default
http://127.0.0.1:5000, or STOWAGE_REGISTRY). With access control on, they log
in with STOWAGE_USERNAME and STOWAGE_PASSWORD (a user's, or a token's).

Quick start:
  stowage serve
  docker tag alpine 127.0.0.1:5000/alpine && docker push 127.0.0.1:5000/alpine
  stowage usage

Run 'stowage <command> --help' for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "usage":
		return runUsage(ctx, rest, stdout, stderr)
	case "delete", "untag", "delete-repo":
		return runDelete(ctx, cmd, rest, stdout, stderr)
	case "gc":
		return runGC(ctx, rest, stdout, stderr)
	case "cache-rule":
		return runCacheRule(ctx, rest, stdout, stderr)
	case "retention":
		return runRetention(ctx, rest, stdout, stderr)
	case "purge":
		return runPurge(ctx, rest, stdout, stderr)
	case "purge-policy":
		return runPurgePolicy(ctx, rest, stdout, stderr)
	case "export":
		return runExport(ctx, rest, stdout, stderr)
	case "import":
		return runImport(ctx, rest, stdout, stderr)
	case "lock":
		return runLock(ctx, rest, stdout, stderr)
	case "immutability":
		return runImmutability(ctx, rest, stdout, stderr)
	case "soft-delete":
		return runSoftDelete(ctx, rest, stdout, stderr)
	case "recycle-bin":
		return runRecycleBin(ctx, rest, stdout, stderr)
	case "restore":
		return runRestore(ctx, rest, stdout, stderr)
	case "keys":
		return runKeys(ctx, rest, stdout, stderr)
	case "scrub":
		return runScrub(ctx, rest, stdout, stderr)
	case "storage":
		return runStorage(ctx, rest, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, stdout, stderr)
	case "migrate-metadata":
		return runMigrateMetadata(ctx, rest, stdout, stderr)
	case "quota":
		return runQuota(ctx, rest, stdout, stderr)
	case "user":
		return runUser(ctx, rest, stdout, stderr)
	case "scope-map":
		return runScopeMap(ctx, rest, stdout, stderr)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "anonymous-pull":
		return runAnonymousPull(ctx, rest, stdout, stderr)
	case "whoami":
		return runWhoami(ctx, rest, stdout, stderr)
	case "replication":
		return runReplication(ctx, rest, stdout, stderr)
	case "events":
		return runEvents(ctx, rest, stdout, stderr)
	case "webhook":
		return runWebhook(ctx, rest, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, rest, stdout, stderr)
	case "completion":
		return runCompletion(rest, stdout, stderr)
	case "version", "--version", "-version":
		return runVersion(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && (rest[0] == "--output" || rest[0] == "-output") {
			rest = rest[min(2, len(rest)):] // the help is text; a script's --output json is let pass
		} else if len(rest) > 0 && (strings.HasPrefix(rest[0], "--output=") || strings.HasPrefix(rest[0], "-output=")) {
			rest = rest[1:]
		}
		if len(rest) > 0 && rest[0] != "-h" && rest[0] != "-help" && rest[0] != "--help" && strings.HasPrefix(rest[0], "-") {
			// An unknown flag: two lines, as every command gives.
			fmt.Fprintf(stderr, "stowage help: flag provided but not defined: %s\nRun 'stowage help' for the commands, 'stowage help COMMAND' for one.\n", rest[0])
			return 2
		}
		if tooManyArgs(nil, "help", rest, stderr) {
			return 2
		}
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			return run(ctx, []string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		return unknownCommand(stderr, cmd)
	}
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}
