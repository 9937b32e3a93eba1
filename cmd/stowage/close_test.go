package main

import (
	"testing"
	"time"
)

// TestCloseTwice: a second Close returns at once (it waited for good on a
// server that had already stopped).
func TestCloseTwice(t *testing.T) {
	m := startMain(t, t.TempDir())
	m.Close()
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a second Close did not return")
	}
}
