package rediscluster

import (
	"context"
	"testing"
	"time"
)

// TestFailover starts a cluster, kills a master and waits for its replica
// to take its slots.
func TestFailover(t *testing.T) {
	if why := Available(); why != "" {
		t.Skip("skipping: " + why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := Start(ctx, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	m, err := c.MasterOf(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(m); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := c.MasterOf(ctx, 0)
	if err != nil || after == m {
		t.Fatalf("slot 0 still on the killed master (%v)", err)
	}
	t.Logf("slot 0 moved from %s to %s in %v", m.Addr(), after.Addr(), time.Since(start).Round(time.Millisecond))
}
