package ui

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
)

// view is one request being answered.
type view struct {
	h  *Handler
	w  http.ResponseWriter
	r  *http.Request
	id auth.Identity
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	CSRF    string
	User    string // "" with access control off
	Open    bool   // access control off
	Data    any
	Flash   string
	Overall bool // may see the overview
}

func (v *view) render(status int, name, title string, data any) {
	t, ok := v.h.pages[name]
	if !ok {
		v.w.WriteHeader(http.StatusInternalServerError)
		return
	}
	p := page{Title: title, Nav: name, CSRF: v.h.csrfToken(v.w, v.r), Data: data, Open: v.h.auth == nil,
		Flash: v.flash()}
	if !v.id.IsAnonymous() {
		p.User = v.id.String()
	}
	p.Overall = name != "login" && v.h.allow(v.id, http.MethodGet, "/api/v1/usage") == nil
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		v.h.log.Error("ui: template failed", "page", name, "err", err)
		http.Error(v.w, "the page could not be drawn (see the server log)", http.StatusInternalServerError)
		return
	}
	v.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	v.w.WriteHeader(status)
	v.w.Write(b.Bytes())
}

// done redirects to next (a path of the UI) after an action, with what it
// did in a cookie that the next page shows once (not in the URL, where
// anyone could write a link that makes the UI say anything).
func (v *view) done(next, msg string) {
	http.SetCookie(v.w, &http.Cookie{Name: cookieFlash, Value: base64.RawURLEncoding.EncodeToString([]byte(msg)), Path: Prefix,
		MaxAge: 60, HttpOnly: true, Secure: secure(v.r), SameSite: http.SameSiteStrictMode})
	http.Redirect(v.w, v.r, next, http.StatusSeeOther)
}

// flash returns the message of the last action, once.
func (v *view) flash() string {
	c, err := v.r.Cookie(cookieFlash)
	if err != nil {
		return ""
	}
	http.SetCookie(v.w, &http.Cookie{Name: cookieFlash, Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: secure(v.r),
		SameSite: http.SameSiteStrictMode})
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(b) > 2000 {
		return ""
	}
	return string(b)
}

// fail shows an error page with the error's status and message (the
// message of a *stowage.Error is written for a person; others are logged
// and shown as a generic failure, as the API does).
func (v *view) fail(err error) {
	st := statusOf(err)
	if st >= 500 {
		v.h.log.Error("ui request failed", "path", v.r.URL.Path, "err", err)
	}
	v.render(st, "error", http.StatusText(st), map[string]any{"Status": st, "Message": errorMessage(err)})
}

func statusOf(err error) int { return stowage.ErrorCodeOf(err).HTTPStatus() }

func errorMessage(err error) string {
	var se *stowage.Error
	if errors.As(err, &se) {
		return se.Message
	}
	return "an internal error happened; the server log has the details"
}

// parsePages parses every page template with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(assets, "assets/templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "assets/templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("ui template %s: %w", base, err)
		}
		pages[base] = t
	}
	return pages, nil
}

var funcs = template.FuncMap{
	"bytes":   humanBytes,
	"ratio":   func(f float64) string { return fmt.Sprintf("%.2f×", f) },
	"pct":     func(a, b int64) string { return percent(a, b) },
	"time":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"short":   shortDigest,
	"q":       url.QueryEscape,
	"join":    strings.Join,
	"add":     func(a, b int) int { return a + b },
	"commas":  commas,
	"locks":   func(l stowage.Locks) string { return l.String() },
	"hasLock": func(l stowage.Locks, bit int) bool { return l&stowage.Locks(bit) != 0 },
	"dict3":   func(target string, l stowage.Locks, csrf string) lockForm { return lockForm{target, l, csrf} },
}

// lockForm is what the lock form template needs.
type lockForm struct {
	Target string
	Locks  stowage.Locks
	CSRF   string
}

func percent(a, b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

// humanBytes writes n in binary units (the exact count goes in a title).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	// Rounded as the CLI rounds (stowage usage), so both read the same.
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// commas writes n with thousands separators (exact byte counts).
func commas(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func shortDigest(d stowage.Digest) string {
	s := string(d)
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}
