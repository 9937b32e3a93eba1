package requestlog

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkMiddleware: what the id, the counting and the log line add to a
// request (JSON log to io.Discard).
func BenchmarkMiddleware(b *testing.B) {
	log := slog.New(Handler(slog.NewJSONHandler(io.Discard, nil)))
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", inner},
		{"middleware", Middleware(log, Options{Route: func(string) string { return "/v2/" }, Done: func(Info) {}}, inner)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/v2/", nil)
			b.ReportAllocs()
			for b.Loop() {
				bc.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
