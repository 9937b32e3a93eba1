// Package tables lists the metadata tables that meta/sqlite and
// meta/postgres share, column for column, for tools that copy or compare a
// whole database (stowage migrate-metadata). A migration that adds a table
// or a column to both schemas adds it here too; the tests of both packages
// check this list against their schema.
package tables

// Table is one metadata table.
type Table struct {
	Name    string
	Columns []string
	// Key orders the rows (the primary key): byte order of names, as both
	// databases sort them.
	Key []string
}

// All lists every table in copy order: tags before repositories, since a
// tag insert bumps its repository's tags_version (a trigger), and the copied
// repository row must keep the source's value.
var All = []Table{
	{"tags", []string{"repo", "name", "digest", "updated", "created", "locks"}, []string{"repo", "name"}},
	{"repositories", []string{"name", "created", "updated", "tags_version", "locks"}, []string{"name"}},
	{"blobs", []string{"digest", "size", "created", "state", "last_used", "unreferenced_since"}, []string{"digest"}},
	{"repository_blobs", []string{"repo", "digest", "created"}, []string{"repo", "digest"}},
	{"manifests", []string{"repo", "digest", "media_type", "size", "subject", "created", "untagged_since", "locks"}, []string{"repo", "digest"}},
	{"manifest_references", []string{"repo", "parent", "child", "kind"}, []string{"repo", "parent", "child"}},
	{"uploads", []string{"id", "repo", "size", "hash_state", "chunks", "started", "updated", "writer", "writer_until", "gen", "data_gen", "verified"}, []string{"id"}},
	{"settings", []string{"key", "value", "updated"}, []string{"key"}},
	{"recycle_bin", []string{"id", "repo", "digest", "record", "refs", "tags", "deleted", "expires"}, []string{"id"}},
	{"recycle_refs", []string{"bin_id", "digest"}, []string{"bin_id", "digest"}},
	{"data_keys", []string{"id", "object", "key_id", "key_version", "wrapped", "created"}, []string{"id"}},
	{"events", []string{"id", "seq", "time", "kind", "actor", "addr", "repo", "digest", "tag", "media_type", "size", "reason", "previous", "origin", "detail"}, []string{"id"}},
	{"feed_cursors", []string{"name", "seq", "updated"}, []string{"name"}},
	{"webhooks", []string{"name", "id", "uri", "actions", "scope", "header_names", "has_secret", "sealed", "data_key", "enabled", "created", "updated"}, []string{"name"}},
	{"webhook_deliveries", []string{"webhook", "id", "time", "event_id", "seq", "action", "repo", "tag", "digest", "attempt", "status", "duration", "error"}, []string{"webhook", "id"}},
	{"replication_clocks", []string{"repo", "name", "digest", "wall", "logical", "region"}, []string{"repo", "name"}},
	{"mirror_repairs", []string{"mirror", "key", "present", "due", "seq"}, []string{"mirror", "key"}},
	{"cache_rules", []string{"name", "source", "upstream", "username", "secret", "plain_http", "tag_ttl", "created"}, []string{"name"}},
	{"usage_history", []string{"day", "physical_bytes", "logical_bytes", "blobs", "repositories", "manifests", "tags", "recorded"}, []string{"day"}},
}

// Derived lists the tables kept by triggers from the others (the bytes
// held, for the storage limit), or transient (the token buckets of the
// request and failed-login limits), or a snapshot the next recording
// replaces (usage_repositories, usage/history): never copied, and not in
// All; loading All into an empty database rebuilds the first, the second
// start full, and the next usage recording writes the third. ui_sessions
// (the web UI's logins) is transient too: after a copy, people log in again.
// usage_digests, repository_usage, usage_totals and digest_owners (the
// usage kept by triggers) are rebuilt by loading All, as held_bytes is;
// so is gc_queue (the collector's queue, kept by triggers).
var Derived = []string{"held_bytes", "rate_buckets", "usage_repositories", "ui_sessions", "usage_digests", "repository_usage", "usage_totals",
	"digest_owners", "gc_queue"}

// PostgresOnly lists the tables only the PostgreSQL schema has, not copied
// either: feed_state, the change feed's sequencer (the next seq to give,
// which it keeps above max(events.seq), so it rebuilds itself from the
// copied events). SQLite numbers events at insert and needs no such state.
var PostgresOnly = []string{"feed_state"}

// Lookup returns the table called name.
func Lookup(name string) (Table, bool) {
	for _, t := range All {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}
