package replication

import (
	"encoding/json"

	"github.com/stowage/stowage"
)

// ChangeOf returns the change an event of this region describes, for
// shipping (without the manifest's bytes); ok is false for events that are
// not replicated (anything but push, untag, delete, repository delete,
// lock and identity changes; deletes made because the repository went
// are one repository.delete event).
func ChangeOf(e stowage.Event, region string) (ch Change, ok bool) {
	ch = Change{Kind: e.Kind, Origin: region, Repo: e.Repo, Digest: e.Digest, MediaType: e.MediaType, HLC: EventHLC(e, region)}
	var d struct {
		LocalCopy bool `json:"localCopy"`
	}
	if e.Detail != "" && json.Unmarshal([]byte(e.Detail), &d) == nil && d.LocalCopy {
		return Change{}, false // a read-through copy cleaned up here (Clocks)
	}
	switch e.Kind {
	case stowage.EventPush, stowage.EventDelete, stowage.EventRestore:
		ch.Tags = EventTags(e)
	case stowage.EventUntag:
		ch.Tags = []string{e.Tag}
	case stowage.EventRepositoryDelete:
	case stowage.EventUser, stowage.EventToken, stowage.EventScopeMap:
		name, ok := identityOf(e)
		if !ok {
			return Change{}, false
		}
		ch.Repo, ch.Identity = "", name
	case stowage.EventLock:
		before, after, ok := lockValues(e)
		if !ok || before == after {
			return Change{}, false // nothing changed: nothing to ship
		}
		mask := before ^ after
		ch.Locks, ch.LockMask = &after, &mask
		if e.Tag != "" {
			ch.Tags = []string{e.Tag}
		}
	default:
		return Change{}, false
	}
	return ch, true
}
