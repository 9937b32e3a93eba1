package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// unknownKeys walks a parsed configuration file along the type it decodes
// into and describes the first key no field has: where it is (line, the
// keys above it) and the closest known key. yaml.v3's own error names a Go
// type ("field adr not found in type config.Config"); and a type with its
// own UnmarshalYAML (database:) decodes its mapping without the decoder's
// KnownFields, so a typo there would pass unseen. Nil if every key is known.
func unknownKeys(n *yaml.Node, t reflect.Type, path []string) error {
	if n == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := unknownKeys(c, t, path); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for i, c := range n.Content {
				if err := unknownKeys(c, t.Elem(), append(path, fmt.Sprintf("[%d]", i))); err != nil {
					return err
				}
			}
		}
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := unknownKeys(n.Content[i+1], t.Elem(), append(path, n.Content[i].Value)); err != nil {
					return err
				}
			}
		case reflect.Struct:
			fields := yamlFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				ft, ok := fields[k.Value]
				if !ok {
					return unknownKeyError(k, path, fields)
				}
				if err := unknownKeys(n.Content[i+1], ft, append(path, k.Value)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// yamlFields maps the keys of struct t (inline structs included) to their
// types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					fields[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

func unknownKeyError(k *yaml.Node, path []string, fields map[string]reflect.Type) error {
	where := ""
	if len(path) > 0 {
		where = " under " + strings.ReplaceAll(strings.Join(path, "."), ".[", "[")
	}
	known := make([]string, 0, len(fields))
	for f := range fields {
		known = append(known, f)
	}
	sort.Strings(known)
	if best := closest(k.Value, known); best != "" {
		return fmt.Errorf("line %d: unknown key %q%s; did you mean %s?", k.Line, k.Value, where, best)
	}
	return fmt.Errorf("line %d: unknown key %q%s (known here: %s)", k.Line, k.Value, where, strings.Join(known, ", "))
}

// Closest returns the word in known nearest to s by edit distance, if it is
// near enough to be a typo (at most a third of its letters, and at least 1,
// differ) or s is a prefix of it, else "". The CLI uses it for commands
// and flags.
func Closest(s string, known []string) string {
	for _, k := range known {
		if len(s) >= 3 && strings.HasPrefix(k, strings.ToLower(s)) && k != s {
			return k
		}
	}
	return closest(s, known)
}

func closest(s string, known []string) string {
	best, bestD := "", -1
	for _, k := range known {
		if d := editDistance(strings.ToLower(s), k); bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	if bestD < 0 || bestD > max(1, len(best)/3) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance of a and b
// (bytes): insertions, deletions, substitutions and swaps of two adjacent
// letters (shwo, show) each count 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
