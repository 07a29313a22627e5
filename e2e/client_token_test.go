package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// mintToken runs `switchboard token` for user with the given lifetime. It
// reports errors rather than fail the test, to run inside a TokenFunc.
func mintToken(ctx context.Context, bin, secret, user string, ttl time.Duration) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "token", "--user", user, "--ttl", ttl.String(), "--jwt-secret", secret).Output()
	if err != nil {
		return "", fmt.Errorf("switchboard token: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// The Go client with JWTs from the binary's own token command, presented
// as a bearer header: when the server closes the connection at the
// token's expiry (1008 token_expired), a client with a TokenFunc comes
// back with a fresh token and its room, and one with a fixed token stops
// instead of being refused.
func TestClientTokenExpiry(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	const secret = "client-expiry-secret-9d1e"
	s := startServer(t, ctx, "--addr", "127.0.0.1:0", "--auth", "jwt", "--jwt-secret", secret,
		"--jwt-leeway", "0s", "--api-key", "k")
	bin := binary(t)
	url := "ws://" + s.Addr + "/ws"

	var minted atomic.Int32
	fresh := dialGo(t, ctx, url, &client.Options{
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		TokenFunc: func(ctx context.Context) (string, error) {
			ttl := time.Hour
			if minted.Add(1) == 1 {
				ttl = 2 * time.Second // the first one expires during the test
			}
			return mintToken(ctx, bin, secret, "alice", ttl)
		},
	})
	if u := fresh.Welcome().User; u != "alice" {
		t.Fatalf("welcome for %q, want alice (from the token)", u)
	}
	if _, err := fresh.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	tok, err := mintToken(ctx, bin, secret, "bob", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fixed := dialGo(t, ctx, url, &client.Options{Token: tok})
	if _, err := fixed.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}

	lost, err := fresh.waitState(ctx, client.StateReconnecting, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ce := (*client.CloseError)(nil); !errors.As(lost.Err, &ce) || ce.Code != 1008 || ce.Reason != "token_expired" {
		t.Fatalf("alice's connection ended with %v, want 1008 token_expired", lost.Err)
	}
	if e, err := fresh.waitEvent(ctx, "alice's rejoin", func(e client.Event) bool { return e.Type == client.EventRejoin }); err != nil || e.Room != "lobby" || e.Err != nil {
		t.Fatalf("rejoin %+v, %v", e, err)
	}
	if n := minted.Load(); n != 2 {
		t.Fatalf("TokenFunc called %d times, want 2", n)
	}

	err = fixed.waitStopped(ctx)
	if ce := (*client.CloseError)(nil); !errors.As(err, &ce) || ce.Code != 1008 || ce.Reason != "token_expired" {
		t.Fatalf("bob's client stopped with %v, want 1008 token_expired", err)
	}
	for _, sc := range fixed.stateChanges() {
		if sc.State == client.StateReconnecting {
			t.Fatalf("bob's client tried again with its expired token (%v)", sc.Err)
		}
	}
	waitAPIUsers(t, ctx, "/api/presence?room=lobby", []string{"alice"}, s)
}
