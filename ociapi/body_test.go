package ociapi_test

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

	"github.com/stowage/stowage"
)

// rawExchange sends one request over a fresh TCP connection the way a
// simple client does: the whole body first (chunked when chunked is true),
// and only then reads the answer. A server that answers early and closes
// the connection makes the write fail (broken pipe, connection reset).
func rawExchange(t *testing.T, addr, method, path string, hdr map[string]string, body []byte, chunked bool) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	w := bufio.NewWriterSize(conn, 64<<10)
	fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, addr)
	for k, v := range hdr {
		fmt.Fprintf(w, "%s: %s\r\n", k, v)
	}
	if chunked {
		fmt.Fprintf(w, "Transfer-Encoding: chunked\r\n\r\n")
		for rest := body; len(rest) > 0; {
			n := min(len(rest), 32<<10)
			fmt.Fprintf(w, "%x\r\n", n)
			w.Write(rest[:n])
			w.WriteString("\r\n")
			rest = rest[n:]
		}
		w.WriteString("0\r\n\r\n")
	} else {
		fmt.Fprintf(w, "Content-Length: %d\r\n\r\n", len(body))
		w.Write(body)
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("sending the %d-byte body: %v (the server closed the connection before reading it)", len(body), err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer after sending the body: %v", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return resp, got
}

// TestOversizedBodyAnswerReadable: a body over a limit is answered 413 with
// an OCI error the client can read even when it writes its whole body before
// reading (the server once answered 400 at once and reset the connection,
// so such a client saw "broken pipe" instead of the error).
func TestOversizedBodyAnswerReadable(t *testing.T) {
	e := newEnv(t)
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	big := bytes.Repeat([]byte("x"), 5<<20) // over the 4 MiB manifest limit
	oci := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
	// An upload session for the chunk case.
	resp, err := http.Post(e.srv.URL+"/v2/r/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	up := resp.Header.Get("Location")

	for _, tc := range []struct {
		name    string
		method  string
		path    string
		hdr     map[string]string
		body    []byte
		chunked bool
		status  int
		code    stowage.ErrorCode
		message string // a part of the message
	}{
		{"manifest 5 MiB", "PUT", "/v2/r/manifests/latest", oci, big, false, 413, stowage.CodeManifestInvalid, "4 MiB"},
		{"manifest 5 MiB chunked", "PUT", "/v2/r/manifests/latest", oci, big, true, 413, stowage.CodeManifestInvalid, "4 MiB"},
		// Refused before a byte is read: the client still reads the answer.
		{"chunk with a wrong Content-Range", "PATCH", up, map[string]string{"Content-Range": "5-10"}, big, false, 416, stowage.CodeRangeInvalid, "Content-Range"},
		{"blob to an invalid name", "POST", "/v2/Bad/blobs/uploads/?digest=sha256:" + strings.Repeat("0", 64), nil, big, false, 400, stowage.CodeNameInvalid, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, tc.method, tc.path, tc.hdr, tc.body, tc.chunked)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.status, trunc(string(body)))
			}
			var we struct {
				Errors []struct {
					Code    stowage.ErrorCode `json:"code"`
					Message string            `json:"message"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(body, &we); err != nil || len(we.Errors) != 1 {
				t.Fatalf("body %q is not one OCI error: %v", trunc(string(body)), err)
			}
			if got := we.Errors[0]; got.Code != tc.code || !strings.Contains(got.Message, tc.message) {
				t.Errorf("error %s %q, want %s with %q", got.Code, got.Message, tc.code, tc.message)
			}
		})
	}
}
