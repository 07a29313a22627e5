package brokertest

import (
	"context"
	"errors"
	"testing"

	"github.com/switchboardhq/switchboard"
)

// ReadyBroker is a Broker that reports whether it can carry messages.
type ReadyBroker interface {
	switchboard.Broker
	Ready() bool
}

// Lifecycle takes b from creation to Close: Publish before Start fails
// with errNotStarted, Start makes it ready, 100 publishes on a subscribed
// channel come back, Close is idempotent, and afterwards Publish fails
// with errClosed and the broker is not ready.
func Lifecycle(t *testing.T, b ReadyBroker, errNotStarted, errClosed error) {
	t.Helper()
	ctx := context.Background()
	if err := b.Publish(ctx, "all", nil); !errors.Is(err, errNotStarted) {
		t.Fatalf("Publish before Start: %v", err)
	}
	c := NewCollector()
	if err := b.Start(ctx, c.Deliver); err != nil {
		t.Fatal(err)
	}
	if !b.Ready() {
		t.Fatal("not ready after Start")
	}
	if err := b.Subscribe(ctx, "all"); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := b.Publish(ctx, "all", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitN(t, "all", 100)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Publish(ctx, "all", []byte("x")); !errors.Is(err, errClosed) {
		t.Fatalf("Publish after Close: %v, want %v", err, errClosed)
	}
	if b.Ready() {
		t.Fatal("ready after Close")
	}
}
