package auth_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/auth"
)

// TestOversizedBodiesAnsweredReadably sends bodies over the token
// endpoint's and the management API's limits the way most clients do:
// the whole body first, then the answer is read. The client must get a
// readable 413 with an OCI error (not a reset connection, nor a 400), and
// the connection must stay usable. (15 MiB: loopback buffers absorb a few
// MiB, so a smaller body would not show a server that stops reading.)
func TestOversizedBodiesAnsweredReadably(t *testing.T) {
	e := newEnv(t)
	big := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name, method, path, ctype, authz, body string
	}{
		{"token form over 64 KiB", "POST", auth.TokenPath, "application/x-www-form-urlencoded", "",
			"grant_type=password&username=admin&password=x&scope=" + big(15<<20)},
		{"token form just over 64 KiB", "POST", auth.TokenPath, "application/x-www-form-urlencoded", "",
			"grant_type=password&username=admin&password=x&scope=" + big(64<<10)},
		{"management JSON over 1 MiB", "PUT", auth.AdminPrefix + "anonymous-pull", "application/json", admin,
			`{"enabled": true, "x": "` + big(15<<20) + `"}`},
		{"management JSON just over 1 MiB", "POST", auth.AdminPrefix + "users", "application/json", admin,
			`{"name": "` + big(1<<20) + `"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(conn)
			var req bytes.Buffer
			fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n", tc.method, tc.path, e.host, tc.ctype, len(tc.body))
			if tc.authz != "" {
				fmt.Fprintf(&req, "Authorization: %s\r\n", tc.authz)
			}
			req.WriteString("\r\n" + tc.body)
			if _, err := conn.Write(req.Bytes()); err != nil {
				t.Fatalf("writing the body: %v (the server gave up on the connection)", err)
			}
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatalf("reading the answer's body: %v", err)
			}
			var oe struct {
				Errors []struct{ Code, Message string }
			}
			if res.StatusCode != http.StatusRequestEntityTooLarge || json.Unmarshal(b, &oe) != nil || len(oe.Errors) != 1 ||
				oe.Errors[0].Code != "INVALID_PARAMETER" || !strings.Contains(oe.Errors[0].Message, "larger than the limit") {
				t.Fatalf("answer %d %s, want 413 with an INVALID_PARAMETER error naming the limit", res.StatusCode, b)
			}
			// The connection still serves.
			fmt.Fprintf(conn, "GET /v2/ HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\n\r\n", e.host, admin)
			res, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("a second request on the connection: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("a second request on the connection: %d", res.StatusCode)
			}
		})
	}
	// Bodies within the limits still work.
	if r := e.do("PUT", auth.AdminPrefix+"anonymous-pull", admin, `{"enabled": true}`, "Content-Type", "application/json"); r.status != 200 {
		t.Fatalf("anonymous-pull on: %d %s", r.status, r.body)
	}
	form := "grant_type=password&username=admin&password=" + adminPass + "&service=" + e.host + "&scope=repository:a/b:pull"
	if r := e.do("POST", auth.TokenPath, "", form, "Content-Type", "application/x-www-form-urlencoded"); r.status != 200 {
		t.Fatalf("token POST: %d %s", r.status, r.body)
	}
}
