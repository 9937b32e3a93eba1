// Package requestlog gives every HTTP request an id and a log line. The id
// is the client's (or its proxy's) X-Request-Id when that is a sane one,
// else a new random one; it is set on the request (so access control and
// the change feed record the same id, stowage.RequestActor), returned in the
// response's X-Request-Id, and added to every record logged with the
// request's context (Handler), errors included.
package requestlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Header is the request and response header that carries the id.
const Header = "X-Request-Id"

// MaxIDLength bounds an id accepted from a client.
const MaxIDLength = 128

// ValidID reports whether a client's id is kept: 1 to MaxIDLength
// characters of A-Z a-z 0-9 and - _ . : (UUIDs, hex ids, a proxy's ids).
// Anything else (spaces, quotes, control characters, a megabyte) is replaced,
// so an id is always safe to log and to echo in a header.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// NewID returns a random id: 32 hex digits.
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type idKey struct{}

// WithID returns ctx carrying request id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

// ID returns the request id ctx carries ("" if none).
func ID(ctx context.Context) string {
	id, _ := ctx.Value(idKey{}).(string)
	return id
}

// Handler wraps a slog.Handler: a record logged with a context that carries
// a request id (log.ErrorContext(r.Context(), …)) gets it as request_id.
func Handler(h slog.Handler) slog.Handler { return idHandler{h} }

type idHandler struct{ slog.Handler }

func (h idHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := ID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h idHandler) WithAttrs(as []slog.Attr) slog.Handler { return idHandler{h.Handler.WithAttrs(as)} }
func (h idHandler) WithGroup(name string) slog.Handler    { return idHandler{h.Handler.WithGroup(name)} }

// Info describes a finished request.
type Info struct {
	ID       string
	Route    string // the route template (never the raw path)
	Method   string
	Status   int
	BytesIn  int64 // request body bytes read
	BytesOut int64 // response body bytes written
	Duration time.Duration
}

// Options configures Middleware.
type Options struct {
	// Route returns the route template of a path (metrics.Route).
	Route func(path string) string
	// Started and Done, if set, are called as each request starts and ends
	// (the request metrics).
	Started func()
	Done    func(Info)
	// Quiet routes (health probes, scrapes: a line every few seconds) are
	// logged at debug level unless they fail with a 5xx.
	Quiet map[string]bool
}

// Middleware gives each request its id (see the package comment), then
// logs one line at info level (debug for a Quiet route) when it ends: id,
// method, route, path, status, bytes in and out, duration and the client's
// address and user agent.
func Middleware(log *slog.Logger, opts Options, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(Header)
		if !ValidID(id) || len(r.Header.Values(Header)) > 1 {
			id = NewID()
		}
		r.Header.Set(Header, id) // what stowage.RequestActor reads
		w.Header().Set(Header, id)
		r = r.WithContext(WithID(r.Context(), id))
		if opts.Started != nil {
			opts.Started()
		}
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		rec := &recorder{ResponseWriter: w}
		defer func() {
			info := Info{ID: id, Route: opts.Route(r.URL.Path), Method: r.Method, Status: rec.status,
				BytesOut: rec.bytes, Duration: time.Since(start)}
			if body != nil {
				info.BytesIn = body.n
			}
			if info.Status == 0 {
				info.Status = http.StatusOK // nothing written: net/http answers 200
			}
			if p := recover(); p != nil {
				// net/http logs the panic; count and log the request as a
				// 500, then let the server handle the panic as before.
				info.Status = http.StatusInternalServerError
				finish(log, r, opts, info)
				panic(p)
			}
			finish(log, r, opts, info)
		}()
		next.ServeHTTP(rec, r)
	})
}

func finish(log *slog.Logger, r *http.Request, opts Options, info Info) {
	if opts.Done != nil {
		opts.Done(info)
	}
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	level := slog.LevelInfo
	if opts.Quiet[info.Route] && info.Status < 500 {
		level = slog.LevelDebug
	}
	log.LogAttrs(r.Context(), level, "request",
		slog.String("method", r.Method), slog.String("route", info.Route), slog.String("path", truncate(r.URL.Path, 512)),
		slog.Int("status", info.Status), slog.Int64("bytes_in", info.BytesIn), slog.Int64("bytes_out", info.BytesOut),
		slog.Float64("duration_ms", float64(info.Duration.Microseconds())/1000), slog.String("remote", addr),
		slog.String("user_agent", truncate(r.UserAgent(), 256)))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// recorder remembers the status and counts the body bytes of an answer. It
// keeps what the writer below can do: Flush, ReadFrom (sendfile) and
// Unwrap (http.ResponseController: deadlines, hijacking).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

func (w *recorder) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
