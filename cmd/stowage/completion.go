package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

const completionUsage = `Usage: stowage completion bash|zsh|fish

Prints a shell completion script for the commands and their subcommands.

  bash:  source <(stowage completion bash)        (or save it in /etc/bash_completion.d/stowage)
  zsh:   stowage completion zsh > "${fpath[1]}/_stowage"
  fish:  stowage completion fish > ~/.config/fish/completions/stowage.fish
`

// subcommands lists the subcommands of the commands that have them.
var subcommands = map[string][]string{
	"retention":      {"show", "set", "run"},
	"purge-policy":   {"list", "set", "delete"},
	"immutability":   {"show", "set"},
	"soft-delete":    {"show", "set"},
	"keys":           {"status", "rotate", "retire"},
	"storage":        {"status", "rebalance"},
	"quota":          {"show", "set", "remove"},
	"user":           {"create", "list", "show", "delete", "passwd", "update"},
	"scope-map":      {"create", "list", "show", "delete"},
	"token":          {"create", "list", "show", "update", "disable", "enable", "delete", "password", "delete-password"},
	"anonymous-pull": {"on", "off"},
	"webhook":        {"create", "list", "show", "update", "delete", "ping", "events"},
	"replication":    {"status", "backfill"},
	"completion":     {"bash", "zsh", "fish"},
	"cache-rule":     {"create", "list", "show", "delete"},
}

// commandNames lists the commands, as the usage text names them.
func commandNames() []string {
	var names []string
	_, list, _ := strings.Cut(usage, "Commands:\n")
	for _, line := range strings.Split(list, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func runCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stdout, completionUsage)
		return 0
	}
	if len(args) > 1 {
		return shortUsage(stderr, "completion", completionUsage, fmt.Sprintf("unexpected argument %q", args[1]))
	}
	if len(args) != 1 {
		return shortUsage(stderr, "completion", completionUsage, "")
	}
	cmds := strings.Join(commandNames(), " ")
	var subs []string
	for c := range subcommands {
		subs = append(subs, c)
	}
	sort.Strings(subs)
	switch args[0] {
	case "bash":
		// Flags: a group's flags are its subcommand's (stowage token
		// create --help), so the help asked is of both words.
		fmt.Fprintf(stdout, "# bash completion for stowage\n_stowage() {\n  local cur=${COMP_WORDS[COMP_CWORD]}\n  if [ \"$COMP_CWORD\" -eq 1 ]; then\n    COMPREPLY=($(compgen -W %q -- \"$cur\")); return\n  fi\n  case \"$cur\" in\n    -*) local cmd=(\"${COMP_WORDS[1]}\")\n      case \" %s \" in *\" ${COMP_WORDS[1]} \"*) [ \"$COMP_CWORD\" -gt 2 ] && cmd+=(\"${COMP_WORDS[2]}\");; esac\n      COMPREPLY=($(compgen -W \"$(stowage \"${cmd[@]}\" --help 2>&1 | sed -n 's/^  \\(-[a-z-]*\\).*/-\\1/p')\" -- \"$cur\")); return;;\n  esac\n  if [ \"$COMP_CWORD\" -eq 2 ]; then\n    case \"${COMP_WORDS[1]}\" in\n", cmds, strings.Join(subs, " "))
		for _, c := range subs {
			fmt.Fprintf(stdout, "      %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", c, strings.Join(subcommands[c], " "))
		}
		fmt.Fprint(stdout, "    esac\n  fi\n}\ncomplete -o default -F _stowage stowage\n")
	case "zsh":
		fmt.Fprintf(stdout, "#compdef stowage\n_stowage() {\n  if (( CURRENT == 2 )); then\n    compadd -- %s\n    return\n  fi\n  if (( CURRENT == 3 )); then\n    case $words[2] in\n", cmds)
		for _, c := range subs {
			fmt.Fprintf(stdout, "      %s) compadd -- %s;;\n", c, strings.Join(subcommands[c], " "))
		}
		fmt.Fprint(stdout, "    esac\n  fi\n  _files\n}\ncompdef _stowage stowage\n")
	case "fish":
		fmt.Fprintf(stdout, "# fish completion for stowage\ncomplete -c stowage -f -n __fish_use_subcommand -a %q\n", cmds)
		for _, c := range subs {
			// Offered until one of them is given.
			fmt.Fprintf(stdout, "complete -c stowage -f -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a %q\n", c, strings.Join(subcommands[c], " "), strings.Join(subcommands[c], " "))
		}
	default:
		fmt.Fprintf(stderr, "stowage completion: unknown shell %q: want bash, zsh or fish\n", args[0])
		return 2
	}
	return 0
}
