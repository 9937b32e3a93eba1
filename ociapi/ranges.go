package ociapi

import (
	"math"
	"strconv"
	"strings"
)

// ParseRange parses a Range header for a blob of the given size. It supports
// one range ("bytes=a-b", "bytes=a-", "bytes=-n"), as registries do. It
// returns the start and length to send; ok is false when the header is
// malformed or the range cannot be satisfied (the caller answers 416).
func ParseRange(header string, size int64) (start, length int64, ok bool) {
	spec, found := strings.CutPrefix(header, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if a == "" { // suffix: the last n bytes
		n, err := parseUint(b)
		if err != nil || n == 0 || size == 0 {
			return 0, 0, false
		}
		n = min(n, size)
		return size - n, n, true
	}
	first, err := parseUint(a)
	if err != nil || first >= size {
		return 0, 0, false
	}
	last := size - 1
	if b != "" {
		if last, err = parseUint(b); err != nil || last < first {
			return 0, 0, false
		}
		last = min(last, size-1)
	}
	return first, last - first + 1, true
}

// ParseContentRange parses the Content-Range of an upload chunk: "a-b", also
// accepted with a "bytes " prefix and a "/total" suffix. It returns the start
// and the length of the chunk.
func ParseContentRange(header string) (start, length int64, ok bool) {
	s := strings.TrimPrefix(strings.TrimSpace(header), "bytes ")
	s = strings.TrimPrefix(s, "bytes=")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	first, err1 := parseUint(a)
	last, err2 := parseUint(b)
	if err1 != nil || err2 != nil || last < first || last-first == math.MaxInt64 {
		return 0, 0, false
	}
	return first, last - first + 1, true
}

func parseUint(s string) (int64, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(s, 10, 64)
}
