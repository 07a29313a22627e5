package client_test

import (
	"context"
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
	hub, err := switchboard.New(switchboard.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(hub.Handler())
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", func() {
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
