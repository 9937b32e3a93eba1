package modeltest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// Run executes steps from scratch in a new directory under dir: a fresh
// engine and model, every step followed by the full check. It returns the
// first failure and the index of the step that caused it (-1: none).
func Run(ctx context.Context, cfg Config, seed uint64, steps []Op, dir string, known func(string) bool) (*failure, int, error) {
	return RunStats(ctx, cfg, seed, steps, dir, known, nil)
}

// RunStats is Run, counting the steps that ran into stats.
func RunStats(ctx context.Context, cfg Config, seed uint64, steps []Op, dir string, known func(string) bool, stats Stats) (*failure, int, error) {
	tmp, err := os.MkdirTemp(dir, "run")
	if err != nil {
		return nil, -1, err
	}
	defer os.RemoveAll(tmp)
	// The clock starts at the real time, so the orphan sweep (which
	// compares file times with the clock) sees real files as old once the
	// clock has jumped past the lease.
	eng, err := newEngine(ctx, cfg, tmp, time.Now().UTC().Truncate(time.Second))
	if err != nil {
		return nil, -1, err
	}
	defer eng.close()
	p := newPool(seed)
	h := &harness{eng: eng, m: newModel(p), pool: p, known: known, stats: stats}
	for i, op := range steps {
		h.nSteps = i
		err := h.step(ctx, op)
		if err == nil {
			err = h.check(ctx)
		}
		if err != nil {
			if f, ok := err.(*failure); ok {
				return f, i, nil
			}
			return &failure{Kind: "error", Msg: fmt.Sprintf("%s: %v", op, err)}, i, nil
		}
	}
	return nil, -1, nil
}

// Shrink reduces a failing step list to a small one that fails the same
// way (same failure kind), by delta debugging: remove chunks of steps,
// halving the chunk size when no chunk can go, re-running from scratch
// each time; then simplify single steps (a crash to its inner step). It
// stops after budget runs or at the time limit, with the smallest list
// found so far.
func Shrink(ctx context.Context, cfg Config, seed uint64, steps []Op, kind, dir string, known func(string) bool, budget int, limit time.Duration) []Op {
	runs := 0
	deadline := time.Now().Add(limit)
	fails := func(cand []Op) bool {
		if runs >= budget || time.Now().After(deadline) {
			return false
		}
		runs++
		f, _, err := Run(ctx, cfg, seed, cand, dir, known)
		return err == nil && f != nil && f.Kind == kind
	}
	// Steps after the failing one never matter.
	if f, at, err := Run(ctx, cfg, seed, steps, dir, known); err == nil && f != nil && at >= 0 {
		steps = steps[:at+1]
	}
	for chunk := len(steps) / 2; chunk >= 1; {
		removed := false
		for start := 0; start+chunk <= len(steps); {
			cand := append(append([]Op{}, steps[:start]...), steps[start+chunk:]...)
			if len(cand) > 0 && fails(cand) {
				steps, removed = cand, true
				continue // same start: the next chunk moved here
			}
			start += chunk
		}
		if !removed {
			chunk /= 2
		}
		if runs >= budget || time.Now().After(deadline) {
			break
		}
	}
	// Simplify: a crash step whose fault does not matter becomes its inner
	// step; a restart may be all the crash needed.
	for i := range steps {
		if steps[i].Kind != opCrash {
			continue
		}
		for _, simpler := range []Op{*steps[i].Inner, {Kind: opRestart}} {
			cand := append([]Op{}, steps...)
			cand[i] = simpler
			if fails(cand) {
				steps = cand
				break
			}
		}
	}
	return steps
}

// Describe renders a failing run for a person: seed, configuration, how
// to replay, and the steps.
func Describe(seed uint64, cfg Config, f *failure, steps []Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "model test failed: seed %d (%s)\n", seed, cfg)
	fmt.Fprintf(&b, "replay: STOWAGE_MODEL_SEED=%d go test -run TestModel ./internal/modeltest/\n", seed)
	fmt.Fprintf(&b, "failure: %s\n", f)
	fmt.Fprintf(&b, "%d steps:\n", len(steps))
	for i, op := range steps {
		fmt.Fprintf(&b, "  %3d  %s\n", i, op)
	}
	return b.String()
}
