package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/auth"
	"github.com/stowage/stowage/mgmt"
	"github.com/stowage/stowage/policy"
)

// withIdentity gives the engine the caller, as the API's access control
// does: the actor of the change feed's events, and the listing and delete
// filters of its scope map.
func withIdentity(ctx context.Context, v *view) context.Context {
	ctx = auth.NewContext(ctx, v.id)
	return stowage.WithActor(ctx, stowage.RequestActor(v.r, v.id.Name, v.h.auth.ClientIP(v.r)))
}

// ---- delete and untag ----

// deleteTarget is what a delete form names.
type deleteTarget struct {
	What   string // image, tag, repository
	Target string // repo@digest, repo:tag, repo
	Repo   string
	Ref    stowage.Reference
	API    string // the API request that does the same: its path
}

func parseTarget(what, target string) (deleteTarget, error) {
	t := deleteTarget{What: what, Target: target}
	switch what {
	case "repository":
		if err := stowage.ValidateName(target); err != nil {
			return t, err
		}
		t.Repo, t.API = target, "/api/v1/repositories/"+target
	case "image", "tag":
		repo, ref, err := mgmt.ParseImageRef(target)
		if err != nil {
			return t, err
		}
		if what == "tag" && ref.IsDigest() {
			return t, stowage.Errorf(stowage.CodeTagInvalid, "untag needs repo:tag, not a digest")
		}
		t.Repo, t.Ref = repo, ref
		t.API = "/api/v1/images/" + target
		if what == "tag" {
			t.API = "/api/v1/tags/" + target
		}
	default:
		return t, stowage.Errorf(stowage.CodeInvalidParameter, "what=%q: want image, tag or repository", what)
	}
	return t, nil
}

func (h *Handler) run(ctx context.Context, t deleteTarget, dry bool) (stowage.DeleteReport, error) {
	switch t.What {
	case "repository":
		return h.reg.DeleteRepository(ctx, t.Repo, dry)
	case "tag":
		return h.reg.Untag(ctx, t.Repo, t.Ref.Tag, dry)
	}
	return h.reg.DeleteImage(ctx, t.Repo, t.Ref, dry)
}

type deleteData struct {
	T      deleteTarget
	Report stowage.DeleteReport
}

// delete shows the dry run of a delete (GET) and, confirmed, does it
// (POST): the engine's own dry run, the one `stowage delete --dry-run`
// and DELETE …?dry_run=true give.
func (h *Handler) delete(v *view) error {
	t, err := parseTarget(v.r.FormValue("what"), v.r.FormValue("target"))
	if err != nil {
		return err
	}
	// Even the dry run needs what the delete needs (as on the API).
	if err := h.allow(v.id, http.MethodDelete, t.API); err != nil {
		return err
	}
	ctx := v.ctx()
	if v.r.Method == http.MethodGet {
		rep, err := h.run(ctx, t, true)
		if err != nil {
			return err
		}
		v.render(http.StatusOK, "delete", "Confirm: delete "+t.Target, deleteData{T: t, Report: rep})
		return nil
	}
	rep, err := h.run(ctx, t, false)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("Deleted %s: %d manifests, %d tags; the next garbage collection frees %s bytes (%d blobs).",
		t.Target, len(rep.Manifests), len(rep.Tags), commas(rep.BytesFreed), rep.BlobsFreed)
	if rep.RecycledUntil != "" {
		msg += " Kept in the recycle bin until " + rep.RecycledUntil + "."
	}
	next := Prefix + "repository?name=" + url.QueryEscape(t.Repo)
	if t.What == "repository" {
		next = Prefix + "repositories"
	}
	v.done(next, msg)
	return nil
}

// ---- locks ----

var lockBits = []struct {
	field string
	bit   stowage.Locks
}{{"write", stowage.LockWrite}, {"delete", stowage.LockDelete}, {"read", stowage.LockRead}, {"list", stowage.LockList}}

// locks sets a target's locks (PATCH /api/v1/locks/<target>: metadata/write).
// The form lists every lock with a checkbox: checked = locked.
func (h *Handler) locks(v *view) error {
	target := v.r.PostFormValue("target")
	repo, ref := target, stowage.Reference{}
	if stowage.ValidateName(target) != nil {
		var err error
		if repo, ref, err = mgmt.ParseImageRef(target); err != nil {
			return err
		}
	}
	if err := h.allow(v.id, http.MethodPatch, "/api/v1/locks/"+target); err != nil {
		return err
	}
	var set, clear stowage.Locks
	for _, b := range lockBits {
		if v.r.PostFormValue(b.field) == "on" {
			set |= b.bit
		} else {
			clear |= b.bit
		}
	}
	l, err := h.reg.SetLocks(v.ctx(), repo, ref, set, clear)
	if err != nil {
		return err
	}
	back := v.r.PostFormValue("back")
	if back == "" || back[0] != '/' || len(back) > 1 && (back[1] == '/' || back[1] == '\\') {
		back = Prefix + "repository?name=" + url.QueryEscape(repo)
	}
	v.done(back, target+": "+l.String())
	return nil
}

// ---- policies ----

type policiesData struct {
	Retention policy.Retention
	Last      *policy.Run
	Preview   *policy.Run
	Purges    []policy.PurgePolicy
	CanChange bool
	// CanChangePurges: may create, edit and delete purge policies.
	CanChangePurges bool
	PurgeRun        *policy.Run
	PurgeName       string
	PreviewErr      string
	// Form is the purge policy in the create/edit form (a policy picked
	// with ?edit=NAME, or what was just previewed).
	Form      policy.PurgePolicy
	FormEdit  bool // editing an existing policy
	FormShown bool // the form is filled (else empty defaults)
}

func (h *Handler) policies(v *view) error {
	if h.opts.Policies == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "policies are not available on this server")
	}
	// GET /api/v1/retention and purge-policies: metadata/read on every repository.
	if err := h.allow(v.id, http.MethodGet, "/api/v1/retention"); err != nil {
		return err
	}
	d, err := h.policyData(v)
	if err != nil {
		return err
	}
	if name := v.r.URL.Query().Get("edit"); name != "" {
		for _, p := range d.Purges {
			if p.Name == name {
				d.Form, d.FormEdit, d.FormShown = p, true, true
			}
		}
		if !d.FormShown {
			return stowage.Errorf(stowage.CodeNameUnknown, "no purge policy called %q", name)
		}
	}
	v.render(http.StatusOK, "policies", "Policies", d)
	return nil
}

// purgeForm is the purge policy a form describes: filters one per line
// (REPO_REGEX:TAG_REGEX), as `stowage purge-policy set` takes them.
func purgeForm(r *http.Request) (policy.PurgePolicy, error) {
	p := policy.PurgePolicy{Name: strings.TrimSpace(r.PostFormValue("name")), Ago: strings.TrimSpace(r.PostFormValue("ago")),
		Every: strings.TrimSpace(r.PostFormValue("every")), Untagged: r.PostFormValue("untagged") == "on"}
	for _, f := range strings.Split(r.PostFormValue("filters"), "\n") {
		if f = strings.TrimSpace(f); f != "" {
			p.Filters = append(p.Filters, f)
		}
	}
	if k := strings.TrimSpace(r.PostFormValue("keep")); k != "" {
		n, err := strconv.Atoi(k)
		if err != nil || n < 0 {
			return p, stowage.Errorf(stowage.CodeInvalidParameter, "keep: a whole number of tags to keep per repository, 0 or more")
		}
		p.Keep = n
	}
	if _, _, err := p.Options(); err != nil {
		return p, err
	}
	return p, nil
}

// purgePolicy previews (a dry run of the policy in the form), saves or
// deletes a scheduled purge policy, as PUT and DELETE
// /api/v1/purge-policies/NAME do, under their authorization.
func (h *Handler) purgePolicy(v *view) error {
	if h.opts.Policies == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "policies are not available on this server")
	}
	action := v.r.PostFormValue("action")
	name := strings.TrimSpace(v.r.PostFormValue("name"))
	method := map[string]string{"preview": http.MethodPost, "save": http.MethodPut, "delete": http.MethodDelete}[action]
	if method == "" {
		return stowage.Errorf(stowage.CodeInvalidParameter, "action=%q: want preview, save or delete", action)
	}
	api := "/api/v1/purge-policies/run"
	if action != "preview" {
		api = "/api/v1/purge-policies/" + url.PathEscape(name)
	}
	if err := h.allow(v.id, method, api); err != nil {
		return err
	}
	ctx := v.ctx()
	if action == "delete" {
		if err := h.opts.Policies.DeletePurgePolicy(ctx, name); err != nil {
			return err
		}
		v.done(Prefix+"policies", fmt.Sprintf("Purge policy %s deleted.", name))
		return nil
	}
	p, err := purgeForm(v.r)
	if err == nil && action == "save" {
		if err = h.opts.Policies.SetPurgePolicy(ctx, p); err == nil {
			v.done(Prefix+"policies", fmt.Sprintf("Purge policy %s saved.", p.Name))
			return nil
		}
	}
	d, derr := h.policyData(v)
	if derr != nil {
		return derr
	}
	d.Form, d.FormShown, d.FormEdit = p, true, v.r.PostFormValue("edit") == "true"
	if err != nil {
		// The form again, with what was typed and why it was refused.
		d.PreviewErr = errorMessage(err)
		v.render(statusOf(err), "policies", "Policies", d)
		return nil
	}
	opts, _, _ := p.Options()
	opts.DryRun = true
	run, err := h.opts.Policies.Purge(ctx, opts)
	if err != nil {
		return err
	}
	d.PurgeRun, d.PurgeName = &run, p.Name
	v.render(http.StatusOK, "policies", "Policies", d)
	return nil
}

func (h *Handler) policyData(v *view) (policiesData, error) {
	ctx := v.ctx()
	var d policiesData
	var err error
	if d.Retention, d.Last, err = h.opts.Policies.Retention(ctx); err != nil {
		return d, err
	}
	if d.Purges, err = h.opts.Policies.PurgePolicies(ctx); err != nil {
		return d, err
	}
	d.CanChange = h.allow(v.id, http.MethodPut, "/api/v1/retention") == nil
	d.CanChangePurges = h.allow(v.id, http.MethodPut, "/api/v1/purge-policies/x") == nil
	return d, nil
}

// retention previews (a dry run), runs or changes the retention policy,
// and previews a scheduled purge: admin actions on the API.
func (h *Handler) retention(v *view) error {
	if h.opts.Policies == nil {
		return stowage.Errorf(stowage.CodeUnsupported, "policies are not available on this server")
	}
	action := v.r.PostFormValue("action")
	api := map[string]string{"preview": "/api/v1/retention/run?dry_run=true", "run": "/api/v1/retention/run",
		"save": "/api/v1/retention", "purge-preview": "/api/v1/purge-policies/run"}[action]
	if api == "" {
		return stowage.Errorf(stowage.CodeInvalidParameter, "action=%q: want preview, run, save or purge-preview", action)
	}
	method := http.MethodPost
	if action == "save" {
		method = http.MethodPut
	}
	if err := h.allow(v.id, method, api); err != nil {
		return err
	}
	ctx := v.ctx()
	switch action {
	case "save":
		days, err := strconv.Atoi(v.r.PostFormValue("days"))
		if err != nil {
			return stowage.Errorf(stowage.CodeInvalidParameter, "days: a whole number of days, 0 to 365")
		}
		p := policy.Retention{Enabled: v.r.PostFormValue("enabled") == "on", Days: days}
		if err := h.opts.Policies.SetRetention(ctx, p); err != nil {
			return err
		}
		v.done(Prefix+"policies", fmt.Sprintf("Retention saved: enabled=%t, %d days.", p.Enabled, p.Days))
		return nil
	case "run":
		run, err := h.opts.Policies.ApplyRetention(ctx, false)
		if err != nil {
			return err
		}
		v.done(Prefix+"policies", fmt.Sprintf("Retention ran: %d manifests deleted; the next garbage collection frees %s bytes.", run.Manifests, commas(run.BytesFreed)))
		return nil
	}
	d, err := h.policyData(v)
	if err != nil {
		return err
	}
	if action == "preview" {
		run, err := h.opts.Policies.ApplyRetention(ctx, true)
		if err != nil {
			return err
		}
		d.Preview = &run
	} else {
		name := v.r.PostFormValue("name")
		for _, p := range d.Purges {
			if p.Name != name {
				continue
			}
			opts, _, err := p.Options()
			if err != nil {
				return err
			}
			opts.DryRun = true
			run, err := h.opts.Policies.Purge(ctx, opts)
			if err != nil {
				return err
			}
			d.PurgeRun, d.PurgeName = &run, name
		}
		if d.PurgeRun == nil {
			return stowage.Errorf(stowage.CodeNameUnknown, "no purge policy called %q", name)
		}
	}
	v.render(http.StatusOK, "policies", "Policies", d)
	return nil
}
