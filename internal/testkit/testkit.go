// Package testkit holds the few helpers every test package of the module
// needs: waiting for a condition with a deadline, a log buffer safe for
// many goroutines, and Bus, an in-process broker for unit tests. Only
// tests import it; it imports nothing of the project.
package testkit

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// Eventually polls cond every poll until it holds, failing the test with
// what after timeout. For state that has no event to wait on (counts,
// replicas, metrics): events are waited on directly.
func Eventually(t testing.TB, timeout, poll time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// Buffer collects output (logs) written from many goroutines.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
