package ui

import "testing"

// TestHumanBytes: sizes read as `stowage usage` writes them (the same
// rounding), and commas group exact counts.
func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n          int64
		want, full string
	}{
		{0, "0 B", "0"},
		{1023, "1023 B", "1,023"},
		{1536, "1.5 KiB", "1,536"},
		{7009865, "6.7 MiB", "7,009,865"}, // the worked example of docs/ui.md
		{10012394, "9.5 MiB", "10,012,394"},
		{5 << 40, "5.0 TiB", "5,497,558,138,880"},
	} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
		if got := commas(tc.n); got != tc.full {
			t.Errorf("commas(%d) = %q, want %q", tc.n, got, tc.full)
		}
	}
}
