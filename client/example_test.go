package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/client"
)

// exampleServer runs a development hub in process (identity from ?user=)
// and returns its /ws URL and a function that stops it.
func exampleServer() (string, func()) {
	url, _, stop := exampleHub(switchboard.Options{})
	return url, stop
}

// exampleHub is exampleServer with options, and the hub itself for the
// examples that play the backend.
func exampleHub(opts switchboard.Options) (string, *switchboard.Hub, func()) {
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	hub, err := switchboard.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(hub.Handler())
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", hub, func() {
		_ = hub.Close()
		srv.Close()
	}
}

func Example() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Against a real server, pass the JWT your backend issued:
	// client.Dial(ctx, "wss://rt.example.com/ws", &client.Options{Token: jwt})
	c, err := client.Dial(ctx, url+"?user=alice", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	joined, err := c.Join(ctx, "lobby")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("in lobby:", joined.Users)

	if err := c.Publish(ctx, "lobby", map[string]string{"text": "hello"}); err != nil {
		log.Fatal(err)
	}
	m := <-c.Messages() // echo is on: the client gets its own message too
	fmt.Printf("%s in %s: %s\n", m.From, m.Room, m.Data)
	// Output:
	// in lobby: [alice]
	// alice in lobby: {"text":"hello"}
}

// Requests the server refuses return an *Error with the protocol's code.
func ExampleError() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url+"?user=alice", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.Publish(ctx, "kitchen", "hi")
	var se *client.Error
	if errors.As(err, &se) {
		fmt.Println(se.Code)
	}
	// Output: not_joined
}

// A typical receive loop: messages and events until the client stops.
func ExampleClient_Messages() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url+"?user=bob", &client.Options{
		OnState: func(sc client.StateChange) {
			if sc.State == client.StateReconnecting {
				log.Printf("connection lost (%v), retrying in %v", sc.Err, sc.Delay)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Join(ctx, "news"); err != nil {
		log.Fatal(err)
	}
	if err := c.Send(ctx, "bob", "a note to myself"); err != nil {
		log.Fatal(err)
	}
	events := c.Events()
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				fmt.Println("stopped:", c.Err())
				return
			}
			fmt.Printf("from %s to %s: %s\n", m.From, m.To, m.Data)
			_ = c.Close() // only to end the example; Messages is closed next
		case e, ok := <-events:
			if !ok {
				events = nil // closed: the client stopped
				continue
			}
			if e.Type == client.EventRejoin && !e.Recovered {
				fmt.Println("reload", e.Room) // messages may have been missed
			}
		}
	}
	// Output:
	// from bob to bob: "a note to myself"
	// stopped: <nil>
}

// A production set-up: a token from the application's backend before
// every connection attempt (so that a reconnect after 1008 token_expired
// presents a fresh one), and the reconnection backoff spelled out.
func ExampleOptions() {
	fetchToken := func(ctx context.Context) (string, error) {
		// e.g. POST /session/realtime-token on the application's backend
		return "eyJhbGciOi...", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "wss://rt.example.com/ws", &client.Options{
		TokenFunc:  fetchToken,
		MinBackoff: time.Second,      // first retry within 1s
		MaxBackoff: 30 * time.Second, // ceiling doubles up to 30s; the wait is drawn below it
		OnState: func(sc client.StateChange) {
			log.Printf("switchboard: %v (%v)", sc.State, sc.Err)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// An application that restarts resumes a room with history where it left
// off: it saves Position after the messages it processed, and joins with
// Since. Within one process the client does this by itself on every
// reconnect.
func ExampleSince() {
	url, hub, stop := exampleHub(switchboard.Options{History: switchboard.HistoryOptions{Rooms: []string{"chat:*"}}})
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, url+"?user=alice", nil)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Join(ctx, "chat:1"); err != nil {
		log.Fatal(err)
	}
	_, _ = hub.Publish(ctx, "chat:1", json.RawMessage(`"one"`)) // the backend
	m := <-c.Messages()
	offset, epoch, _ := c.Position("chat:1") // saved with the processed message
	fmt.Printf("processed %s at offset %d\n", m.Data, m.Offset)
	_ = c.Close()

	_, _ = hub.Publish(ctx, "chat:1", json.RawMessage(`"two"`)) // while the application is down
	_, _ = hub.Publish(ctx, "chat:1", json.RawMessage(`"three"`))

	c, err = client.Dial(ctx, url+"?user=alice", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	res, err := c.Join(ctx, "chat:1", client.Since(offset, epoch))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("recovered:", res.Recovered)
	for range 2 {
		m := <-c.Messages()
		fmt.Printf("%s at offset %d (recovered %v)\n", m.Data, m.Offset, m.Recovered)
	}
	// Output:
	// processed "one" at offset 1
	// recovered: true
	// "two" at offset 2 (recovered true)
	// "three" at offset 3 (recovered true)
}

// Presence lists a room's users; join and leave events follow changes.
func ExampleClient_Presence() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, err := client.Dial(ctx, url+"?user=alice", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Join(ctx, "lobby"); err != nil {
		log.Fatal(err)
	}
	bob, err := client.Dial(ctx, url+"?user=bob", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	if _, err := bob.Join(ctx, "lobby"); err != nil {
		log.Fatal(err)
	}
	e := <-alice.Events()
	fmt.Println(e.Type, e.Room, e.User)
	users, err := alice.Presence(ctx, "lobby")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(users)
	// Output:
	// join lobby bob
	// [alice bob]
}

// Shutdown is Close with a deadline for the close handshake.
func ExampleClient_Shutdown() {
	url, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url+"?user=alice", nil)
	if err != nil {
		log.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	fmt.Println(c.Shutdown(sctx))
	<-c.Done() // already closed when Shutdown returns
	// Output: <nil>
}
