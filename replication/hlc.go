// Package replication joins independent Stowage deployments ("regions")
// into one registry (docs/replication.md): every region accepts writes, a
// replicator per peer ships the changes that originated here (feed events
// with Origin ""), and concurrent changes of one tag or manifest converge by
// last writer wins, ordered by a hybrid logical clock (HLC).
package replication

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HLC is a hybrid logical clock reading: physical time in milliseconds, a
// logical counter that orders changes within one millisecond (or after a
// reading from a clock that is ahead), and the region that made the change,
// which breaks ties. Readings of one tag are totally ordered (Compare), and
// a change made after a region has seen a reading is always later than it,
// however the regions' clocks disagree.
type HLC struct {
	Wall    int64  // Unix milliseconds
	Logical int32  // orders readings with the same Wall
	Region  string // breaks ties; "" only for the zero reading
}

// IsZero reports whether h is the zero reading (earlier than any other).
func (h HLC) IsZero() bool { return h.Wall == 0 && h.Logical == 0 && h.Region == "" }

// Compare returns -1, 0 or 1 as h is before, equal to or after o: by Wall,
// then Logical, then Region (byte order).
func (h HLC) Compare(o HLC) int {
	switch {
	case h.Wall != o.Wall:
		return cmp(h.Wall < o.Wall)
	case h.Logical != o.Logical:
		return cmp(h.Logical < o.Logical)
	case h.Region != o.Region:
		return cmp(h.Region < o.Region)
	}
	return 0
}

func cmp(less bool) int {
	if less {
		return -1
	}
	return 1
}

// After reports whether h is later than o.
func (h HLC) After(o HLC) bool { return h.Compare(o) > 0 }

// Tick returns the reading for a change that region makes at now, after
// having seen last (the latest reading of what it changes): later than
// last whatever now says, and equal to now when the clock is ahead of last.
func Tick(last HLC, now time.Time, region string) HLC {
	wall := now.UnixMilli()
	if wall > last.Wall {
		return HLC{Wall: wall, Region: region}
	}
	return HLC{Wall: last.Wall, Logical: last.Logical + 1, Region: region}
}

// String formats h as "wall.logical.region" (what Parse reads; JSON and
// the event's Detail carry it so).
func (h HLC) String() string {
	return fmt.Sprintf("%d.%d.%s", h.Wall, h.Logical, h.Region)
}

// Time is h's physical part.
func (h HLC) Time() time.Time { return time.UnixMilli(h.Wall).UTC() }

// ParseHLC reads what String writes.
func ParseHLC(s string) (HLC, error) {
	w, rest, ok1 := strings.Cut(s, ".")
	l, region, ok2 := strings.Cut(rest, ".")
	wall, err1 := strconv.ParseInt(w, 10, 64)
	logical, err2 := strconv.ParseInt(l, 10, 32)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || wall < 0 || logical < 0 || region == "" {
		return HLC{}, fmt.Errorf("invalid hybrid logical clock %q: want wall-ms.logical.region", s)
	}
	return HLC{Wall: wall, Logical: int32(logical), Region: region}, nil
}

// MarshalText and UnmarshalText make an HLC a JSON string.
func (h HLC) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h *HLC) UnmarshalText(b []byte) error {
	v, err := ParseHLC(string(b))
	*h = v
	return err
}
