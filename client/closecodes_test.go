package client

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// noRetry fails the test if the client tries to connect again.
func noRetry(t *testing.T, st states) {
	t.Helper()
	for {
		select {
		case sc := <-st:
			if sc.State == StateReconnecting || sc.State == StateConnecting {
				t.Fatalf("state %v after a close that forbids reconnecting", sc.State)
			}
		default:
			return
		}
	}
}

// closedWith waits for StateClosed and checks its close code and reason.
func closedWith(t *testing.T, c *Client, st states, code int, reason string) {
	t.Helper()
	sc := st.expect(t, StateClosed)
	var ce *CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != code || reason != "" && ce.Reason != reason {
		t.Fatalf("closed with %v, want %d %s", sc.Err, code, reason)
	}
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("Done not closed")
	}
	if !errors.As(c.Err(), &ce) || ce.Code != code {
		t.Fatalf("Err() = %v, want close code %d", c.Err(), code)
	}
	noRetry(t, st)
}

// An idle connection stays up on pings alone: the client answers every
// one, so the server never times it out.
func TestPingsAnswered(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{PingInterval: 100 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
	c, st := dialTest(t, url, "alice", Options{})
	first := c.Welcome().Conn
	// Without pongs the server would close after 200ms; ten answered pings
	// take a second.
	testkit.Eventually(t, wait, 20*time.Millisecond, "ten pongs", func() bool {
		return hub.Counters().MessagesIn["pong"] >= 10
	})
	select {
	case sc := <-st:
		t.Fatalf("state %v (%v) on an idle, answered connection", sc.State, sc.Err)
	default:
	}
	if c.Welcome().Conn != first || hub.Counters().Closes[4000] != 0 {
		t.Fatalf("the connection was replaced: %+v", hub.Counters().Closes)
	}
}

// A user's newer connection evicts the older one with 4002; the evicted
// client stops instead of evicting the newer one in turn.
func TestReplacedStopsReconnecting(t *testing.T) {
	_, url := startHub(t, switchboard.Options{Limits: switchboard.Limits{
		MaxConnsPerUser: 1, PerUserPolicy: switchboard.PolicyEvictOldest,
	}})
	old, oldSt := dialTest(t, url, "alice", Options{})
	if _, err := old.Join(ctxT(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	newer, newSt := dialTest(t, url, "alice", Options{})
	closedWith(t, old, oldSt, 4002, "replaced")
	if _, err := newer.Join(ctxT(t), "lobby"); err != nil {
		t.Fatalf("the newer connection: %v", err)
	}
	if users, err := newer.Presence(ctxT(t), "lobby"); err != nil || !slicesEqual(users, "alice") {
		t.Fatalf("presence %v %v", users, err)
	}
	select {
	case sc := <-newSt:
		t.Fatalf("the newer client went %v (%v)", sc.State, sc.Err)
	default:
	}
}

// tokenHub accepts the tokens "short" (expiring soon) and "long" as the
// user dave.
func tokenHub(t *testing.T) string {
	_, url := startHub(t, switchboard.Options{Authenticate: func(r *http.Request) (*switchboard.Identity, error) {
		switch switchboard.BearerToken(r) {
		case "short":
			return &switchboard.Identity{User: "dave", ExpiresAt: time.Now().Add(300 * time.Millisecond)}, nil
		case "long":
			return &switchboard.Identity{User: "dave"}, nil
		}
		return nil, errors.New("bad token")
	}})
	return url
}

// A connection closed with 1008 token_expired comes back with the fresh
// token TokenFunc gives, and its rooms are rejoined.
func TestTokenExpiredRefreshed(t *testing.T) {
	url := tokenHub(t)
	var calls atomic.Int32
	c, st := dialTest(t, url, "", Options{TokenFunc: func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 {
			return "short", nil
		}
		return "long", nil
	}})
	if _, err := c.Join(ctxT(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	sc := st.expect(t, StateReconnecting)
	var ce *CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != 1008 || ce.Reason != "token_expired" {
		t.Fatalf("reconnecting after %v, want 1008 token_expired", sc.Err)
	}
	if e := nextEvent(t, c, EventRejoin); e.Room != "lobby" || e.Err != nil {
		t.Fatalf("rejoin %+v", e)
	}
	st.expect(t, StateConnected)
	if n := calls.Load(); n != 2 {
		t.Fatalf("TokenFunc called %d times, want 2", n)
	}
	if users, err := c.Presence(ctxT(t), "lobby"); err != nil || !slicesEqual(users, "dave") {
		t.Fatalf("presence after the refresh: %v %v", users, err)
	}
}

// With a fixed token there is nothing fresh to present: the client stops
// at 1008 token_expired rather than be refused with 401.
func TestTokenExpiredWithoutRefreshStops(t *testing.T) {
	url := tokenHub(t)
	c, st := dialTest(t, url, "", Options{Token: "short"})
	closedWith(t, c, st, 1008, "token_expired")
	if _, err := c.Presence(ctxT(t), "lobby"); !errors.Is(err, ErrClosed) {
		t.Fatalf("a request after the stop: %v", err)
	}
}

// Too many rate-limited frames in a row close with 1008 policy: the client
// reports rate_limited on the refused requests, then reconnects (the
// protocol's advice: back off and send less).
func TestRateLimitCloseReconnects(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{Limits: switchboard.Limits{Rate: 0.5, Burst: 2, MaxRateViolations: 2}})
	c, st := dialTest(t, url, "alice", Options{})
	if _, err := c.Join(ctxT(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	first := c.Welcome().Conn
	var limited bool
	for i := 0; i < 5; i++ {
		err := c.Publish(ctxT(t), "lobby", i)
		var se *Error
		if errors.As(err, &se) && se.Code == CodeRateLimited {
			limited = true
		}
		if errors.Is(err, ErrDisconnected) {
			break
		}
	}
	if !limited {
		t.Fatal("no request was refused with rate_limited")
	}
	sc := st.expect(t, StateReconnecting)
	var ce *CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != 1008 {
		t.Fatalf("reconnecting after %v, want 1008", sc.Err)
	}
	st.expect(t, StateConnected)
	if c.Welcome().Conn == first || hub.Counters().Closes[1008] != 1 {
		t.Fatalf("not a new connection after 1008: %+v", hub.Counters().Closes)
	}
}
