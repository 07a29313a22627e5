package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

func TestJoinPublishReceive(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	alice, _ := dialTest(t, url, "alice", Options{})
	bob, _ := dialTest(t, url, "bob", Options{})

	w := alice.Welcome()
	if w.User != "alice" || w.Conn == "" || w.PingInterval != switchboard.DefaultPingInterval ||
		w.PongTimeout != switchboard.DefaultPongTimeout || w.MaxMessageBytes != switchboard.DefaultMaxMessageBytes {
		t.Fatalf("welcome %+v", w)
	}
	if res, err := alice.Join(ctxT(t), "lobby"); err != nil || !slices.Equal(res.Users, []string{"alice"}) || res.History {
		t.Fatalf("alice join: %+v, %v", res, err)
	}
	res, err := bob.Join(ctxT(t), "lobby")
	if err != nil || !slices.Equal(res.Users, []string{"alice", "bob"}) {
		t.Fatalf("bob join: %+v, %v", res, err)
	}
	if got := bob.Rooms(); !slices.Equal(got, []string{"lobby"}) {
		t.Fatalf("Rooms() = %v", got)
	}

	// Data goes byte for byte: a RawMessage keeps its digits.
	if err := alice.Publish(ctxT(t), "lobby", json.RawMessage(`{"n":123456789012345678901234567890}`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{bob, alice} { // alice gets her own: echo is on by default
		m := next(t, c)
		if m.Room != "lobby" || m.From != "alice" || string(m.Data) != `{"n":123456789012345678901234567890}` ||
			m.ID == "" || m.Time.IsZero() || m.Recovered || m.Offset != 0 {
			t.Fatalf("message %+v", m)
		}
	}
	// A Go value is marshalled.
	if err := bob.Publish(ctxT(t), "lobby", map[string]string{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	if m := next(t, alice); m.From != "bob" || string(m.Data) != `{"text":"hi"}` {
		t.Fatalf("message %+v", m)
	}
}

func TestEchoOff(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	alice, _ := dialTest(t, url, "alice", Options{})
	if _, err := alice.Join(ctxT(t), "quiet", Echo(false)); err != nil {
		t.Fatal(err)
	}
	if err := alice.Publish(ctxT(t), "quiet", "mine"); err != nil {
		t.Fatal(err)
	}
	// A direct message to herself comes through; the publish did not.
	if err := alice.Send(ctxT(t), "alice", "direct"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, alice); m.To != "alice" || string(m.Data) != `"direct"` {
		t.Fatalf("first message %+v; the own publish should have been left out", m)
	}
}

func TestSendToUser(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	alice, _ := dialTest(t, url, "alice", Options{})
	bob, _ := dialTest(t, url, "bob", Options{})
	if err := alice.Send(ctxT(t), "bob", map[string]any{"invite": "chat:42"}); err != nil {
		t.Fatal(err)
	}
	m := next(t, bob)
	if m.To != "bob" || m.From != "alice" || m.Room != "" || string(m.Data) != `{"invite":"chat:42"}` {
		t.Fatalf("message %+v", m)
	}
	// Nobody online is not an error.
	if err := alice.Send(ctxT(t), "nobody", 1); err != nil {
		t.Fatalf("send to an absent user: %v", err)
	}
}

func TestPresenceAndEvents(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	alice, _ := dialTest(t, url, "alice", Options{})
	bob, _ := dialTest(t, url, "bob", Options{})
	if _, err := alice.Join(ctxT(t), "room"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctxT(t), "room"); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, alice, EventJoin); e.Room != "room" || e.User != "bob" {
		t.Fatalf("join event %+v", e)
	}
	// Several presence requests in flight each get their own answer.
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			users, err := bob.Presence(ctxT(t), "room")
			if err == nil && !slices.Equal(users, []string{"alice", "bob"}) {
				err = errors.New("presence " + strings.Join(users, ","))
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if users, err := alice.Presence(ctxT(t), "elsewhere"); err != nil || len(users) != 0 {
		t.Fatalf("presence of an empty room: %v, %v", users, err)
	}
	if err := bob.Leave(ctxT(t), "room"); err != nil {
		t.Fatal(err)
	}
	if e := nextEvent(t, alice, EventLeave); e.Room != "room" || e.User != "bob" {
		t.Fatalf("leave event %+v", e)
	}
	if got := bob.Rooms(); len(got) != 0 {
		t.Fatalf("Rooms() after leave = %v", got)
	}
}

func TestErrorFrames(t *testing.T) {
	_, url := startHub(t, switchboard.Options{Limits: switchboard.Limits{MaxMessageBytes: 1024}})
	alice, _ := dialTest(t, url, "alice", Options{})

	err := alice.Publish(ctxT(t), "kitchen", "hi")
	asError(t, err, CodeNotJoined)
	if !strings.Contains(err.Error(), "publish to kitchen") {
		t.Fatalf("error %q does not say what failed", err)
	}
	_, err = alice.Join(ctxT(t), "user:bob")
	asError(t, err, CodeForbidden)
	_, err = alice.Join(ctxT(t), "no spaces")
	asError(t, err, CodeBadRequest)
	asError(t, alice.Leave(ctxT(t), "never-joined"), CodeNotJoined)

	// Too big for the server's frame limit: refused here, connection kept.
	err = alice.Send(ctxT(t), "bob", strings.Repeat("x", 2000))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized send: %v", err)
	}
	if _, err := alice.Join(ctxT(t), "fine"); err != nil {
		t.Fatalf("the connection should still serve: %v", err)
	}
	if w := alice.Welcome(); w.MaxMessageBytes != 1024 {
		t.Fatalf("welcome %+v", w)
	}
}

func TestToken(t *testing.T) {
	_, url := startHub(t, switchboard.Options{Authenticate: func(r *http.Request) (*switchboard.Identity, error) {
		if switchboard.BearerToken(r) != "s3cret" || r.Header.Get("X-App") != "test" {
			return nil, errors.New("bad token")
		}
		return &switchboard.Identity{User: "carol"}, nil
	}})
	c, _ := dialTest(t, url, "", Options{Token: "s3cret", HTTPHeader: http.Header{"X-App": {"test"}}})
	if u := c.Welcome().User; u != "carol" {
		t.Fatalf("user %q", u)
	}

	_, err := Dial(ctxT(t), url+"?token=leak-me", &Options{Token: "wrong"})
	var he *HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || he.Code != "unauthorized" {
		t.Fatalf("dial with a wrong token: %v", err)
	}
	if strings.Contains(err.Error(), "leak-me") {
		t.Fatalf("the error shows the query: %v", err)
	}

	_, err = Dial(ctxT(t), "ws://127.0.0.1:1/ws?token=leak-me", nil)
	if err == nil || strings.Contains(err.Error(), "leak-me") {
		t.Fatalf("dial of a closed port: %v", err)
	}

	calls := 0
	c2, _ := dialTest(t, url, "", Options{HTTPHeader: http.Header{"X-App": {"test"}}, TokenFunc: func(context.Context) (string, error) {
		calls++
		return "s3cret", nil
	}})
	if calls != 1 || c2.Welcome().User != "carol" {
		t.Fatalf("TokenFunc called %d times", calls)
	}
}

func TestKickedStopsReconnecting(t *testing.T) {
	hub, url := startHub(t, switchboard.Options{})
	c, st := dialTest(t, url, "alice", Options{})
	if _, err := c.Join(ctxT(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	if err := hub.Disconnect(ctxT(t), "alice"); err != nil {
		t.Fatal(err)
	}
	sc := st.expect(t, StateClosed)
	var ce *CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != 4003 {
		t.Fatalf("closed with %v, want 4003", sc.Err)
	}
	select {
	case <-c.Done():
	case <-time.After(wait):
		t.Fatal("Done not closed")
	}
	if !errors.As(c.Err(), &ce) || ce.Code != 4003 {
		t.Fatalf("Err() = %v", c.Err())
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("Messages not closed")
	}
	if err := c.Publish(ctxT(t), "lobby", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after the kick: %v", err)
	}
	for {
		select {
		case sc := <-st:
			if sc.State == StateReconnecting || sc.State == StateConnecting {
				t.Fatalf("state %v after a kick", sc.State)
			}
			continue
		default:
		}
		break
	}
}

func TestReconnectAfterNetworkLoss(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	nets := newConns(t)
	alice, st := dialTest(t, url, "alice", Options{HTTPClient: nets.client()})
	bob, _ := dialTest(t, url, "bob", Options{})
	if _, err := alice.Join(ctxT(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	first := alice.Welcome().Conn
	nets.cut()
	sc := st.expect(t, StateReconnecting)
	if sc.Delay > 10*time.Millisecond {
		t.Fatalf("first retry after %v, over MinBackoff", sc.Delay)
	}
	e := nextEvent(t, alice, EventRejoin)
	if e.Room != "lobby" || e.Err != nil || e.Recovered {
		t.Fatalf("rejoin event %+v (a room without history cannot be recovered)", e)
	}
	st.expect(t, StateConnected)
	if alice.Welcome().Conn == first {
		t.Fatal("no new connection")
	}
	// The room was joined again: bob's publish reaches alice.
	if _, err := bob.Join(ctxT(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Publish(ctxT(t), "lobby", "back"); err != nil {
		t.Fatal(err)
	}
	if m := next(t, alice); string(m.Data) != `"back"` {
		t.Fatalf("message %+v", m)
	}
}

func TestDeadServerDetected(t *testing.T) {
	_, url := startHub(t, switchboard.Options{PingInterval: 100 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
	p := newProxy(t, strings.TrimPrefix(strings.TrimSuffix(url, "/ws"), "ws://"))
	c, st := dialTest(t, "ws://"+p.addr()+"/ws", "alice", Options{})
	if _, err := c.Join(ctxT(t), "lobby"); err != nil {
		t.Fatal(err)
	}
	// Several server pings come and go while the connection is healthy.
	for range 3 {
		if _, err := c.Presence(ctxT(t), "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	p.freeze()
	start := time.Now()

	// A request on a hung connection ends with its context.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Publish(ctx, "lobby", "lost"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish on a frozen connection: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Presence(ctx2, "lobby")
		done <- err
	}()
	cancel2()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled presence: %v", err)
	}

	sc := st.expect(t, StateReconnecting)
	took := time.Since(start)
	var ce *CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != 1006 || !strings.Contains(ce.Reason, "no frame") {
		t.Fatalf("reconnecting after %v", sc.Err)
	}
	// 100ms + 100ms plus the one-second margin, counted from the last frame
	// (at most a ping interval before the freeze).
	if took < time.Second || took > 5*time.Second {
		t.Fatalf("dead server noticed after %v", took)
	}
	st.expect(t, StateConnected)
	if _, err := c.Presence(ctxT(t), "lobby"); err != nil {
		t.Fatalf("after reconnecting: %v", err)
	}
}

func TestCloseWhileReconnecting(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	nets := newConns(t)
	c, st := dialTest(t, url, "alice", Options{HTTPClient: nets.client()})
	release := nets.hold()
	defer release()
	nets.cut()
	st.expect(t, StateConnecting) // the retry waits in the held dial
	pending := make(chan error, 1)
	go func() { pending <- c.Publish(context.Background(), "lobby", 1) }()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-pending; !errors.Is(err, ErrClosed) {
		t.Fatalf("request waiting for a connection: %v", err)
	}
	if c.Err() != nil {
		t.Fatalf("Err() after Close = %v", c.Err())
	}
	st.expect(t, StateClosed)
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	top := func() float64 { return 0.999999 }
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for attempt, w := range want {
		got := backoff(attempt, lo, hi, top)
		if got > w*time.Millisecond || got < w*time.Millisecond*99/100 {
			t.Errorf("attempt %d: ceiling %v, want %v", attempt, got, w*time.Millisecond)
		}
	}
	if got := backoff(3, lo, hi, func() float64 { return 0 }); got != 0 {
		t.Errorf("full jitter reaches 0, got %v", got)
	}
	if got := backoff(2, lo, hi, func() float64 { return 0.5 }); got != 200*time.Millisecond {
		t.Errorf("half of 400ms: %v", got)
	}
	if got := backoff(1000, lo, hi, top); got > hi {
		t.Errorf("a large attempt overflows: %v", got)
	}
	o := Options{}.withDefaults()
	if o.MinBackoff != DefaultMinBackoff || o.MaxBackoff != DefaultMaxBackoff {
		t.Errorf("defaults %v %v", o.MinBackoff, o.MaxBackoff)
	}
	if o := (Options{MinBackoff: time.Minute}).withDefaults(); o.MaxBackoff != time.Minute {
		t.Errorf("MaxBackoff below MinBackoff: %v", o.MaxBackoff)
	}
}

// Shutdown bounds the close handshake with its context: a server that
// never answers it does not hold the application for the library's 5s.
func TestShutdownBoundedByContext(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	p := newProxy(t, strings.TrimPrefix(strings.TrimSuffix(url, "/ws"), "ws://"))
	c, st := dialTest(t, "ws://"+p.addr()+"/ws", "alice", Options{})
	p.freeze()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	returned := make(chan error, 1)
	go func() { returned <- c.Shutdown(ctx) }()
	select {
	case err := <-returned:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown of a connection whose server does not answer: %v", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Shutdown waited past its context for the close handshake")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Shutdown returned")
	}
	st.expect(t, StateClosed)
	if err := c.Close(); err != nil {
		t.Fatalf("Close after Shutdown: %v", err)
	}
}

// What the server announced is there as soon as Dial returns, before the
// connection goroutine has got going.
func TestWelcomeAfterDial(t *testing.T) {
	_, url := startHub(t, switchboard.Options{})
	for range 20 {
		c, err := Dial(ctxT(t), url+"?user=alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		w := c.Welcome()
		_ = c.Close()
		if w.User != "alice" || w.Conn == "" || w.MaxMessageBytes == 0 {
			t.Fatalf("Welcome right after Dial: %+v", w)
		}
	}
}
