package ui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/ui"
)

// TestAlsoUsedByFiltersWhilePaging: the image page's "also used by" finds
// the images the caller may see that share a layer even when many images
// it may not see sort before them, and never says "only this image" when
// other images use the blob (review r2/i16 F1).
func TestAlsoUsedByFiltersWhilePaging(t *testing.T) {
	cases := []struct {
		name      string
		hidden    int // images the token may not see, sorting first
		visible   bool
		scanLimit int
		want      []string
		notWant   []string
	}{
		{"visible after 60 hidden", 60, true, 0, []string{"team-c/x2", "shared with images you cannot see"}, []string{"only this image", "unknown beyond"}},
		{"only hidden ones", 60, false, 0, []string{"shared with images you cannot see"}, []string{"only this image", "unknown beyond"}},
		{"scan limit reached", 60, true, 20, []string{"unknown beyond 20 checked", "shared with images you cannot see"}, []string{"only this image", "team-c/x2@"}},
		{"really only this image", 0, false, 0, []string{"only this image"}, []string{"cannot see", "unknown beyond"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setupWith(t, true, func(o *ui.Options) { o.SharerScanLimit = tc.scanLimit })
			ctx := context.Background()
			layer := "layer shared by team-b and team-c"
			for i := 0; i < tc.hidden; i++ {
				push(t, e.reg, fmt.Sprintf("team-b/z%03d", i), "1", layer)
			}
			x1 := push(t, e.reg, "team-c/x1", "1", layer)
			if tc.visible {
				push(t, e.reg, "team-c/x2", "1", layer)
			}
			if _, _, err := e.a.PutScopeMap(ctx, "team-c-read", auth.ScopeMapSpec{Rules: []auth.Rule{{Repository: "team-c/*",
				Actions: []auth.Action{auth.ContentRead, auth.MetadataRead}}}}); err != nil {
				t.Fatal(err)
			}
			tok, err := e.a.CreateToken(ctx, auth.TokenSpec{Name: "ct", ScopeMap: "team-c-read"})
			if err != nil {
				t.Fatal(err)
			}
			e.pw["ct"] = tok.Passwords[0].Value
			c := e.client(t)
			e.login(t, c, "ct")
			st, body := get(t, c, e.srv.URL+"/ui/manifest?name=team-c/x1&digest="+string(x1))
			if st != 200 {
				t.Fatalf("manifest page: %d", st)
			}
			// The layer's row (the config is each image's own).
			i := strings.Index(body, `<code title="`+string(digestOf([]byte(layer)))+`"`)
			if i < 0 {
				t.Fatal("no row for the layer")
			}
			table := body[i:]
			table = table[:strings.Index(table, "</tr>")]
			for _, w := range tc.want {
				if !strings.Contains(table, w) {
					t.Errorf("the layers table lacks %q:\n%s", w, table)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(table, w) {
					t.Errorf("the layers table says %q:\n%s", w, table)
				}
			}
			if strings.Contains(table, "team-b/") {
				t.Errorf("the token sees team-b in the layers table:\n%s", table)
			}
		})
	}
}
