package switchboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

// exampleClient connects as user and returns a function that reads the
// next frame's type and data.
func exampleClient(ctx context.Context, srv *httptest.Server, user string) (*websocket.Conn, func() string) {
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?user=" + user
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		panic(err)
	}
	next := func() string {
		_, data, err := c.Read(ctx)
		if err != nil {
			return fmt.Sprintf("closed: %d", websocket.CloseStatus(err))
		}
		var f struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
			User string          `json:"user"`
		}
		_ = json.Unmarshal(data, &f)
		return strings.Join(strings.Fields(f.Type+" "+f.User+" "+string(f.Data)), " ")
	}
	return c, next
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Mount the hub on a net/http server, let a client join a room, and publish
// to it from application code.
func Example() {
	hub, err := switchboard.New(switchboard.Options{Logger: quietLogger()})
	if err != nil {
		panic(err)
	}
	defer hub.Close()
	mux := http.NewServeMux()
	mux.Handle("/ws", hub.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := context.Background()
	c, next := exampleClient(ctx, srv, "alice")
	defer c.CloseNow()
	fmt.Println(next()) // welcome
	_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"news","id":"1"}`))
	fmt.Println(next()) // ack

	_, _ = hub.Publish(ctx, "news", json.RawMessage(`{"headline":"hello"}`))
	fmt.Println(next())
	// Output:
	// welcome alice
	// ack
	// message {"headline":"hello"}
}

// SendToUser reaches every connection of a user: here, a laptop and a phone.
func ExampleHub_SendToUser() {
	hub, _ := switchboard.New(switchboard.Options{Logger: quietLogger()})
	defer hub.Close()
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	ctx := context.Background()
	laptop, nextLaptop := exampleClient(ctx, srv, "bob")
	defer laptop.CloseNow()
	phone, nextPhone := exampleClient(ctx, srv, "bob")
	defer phone.CloseNow()
	nextLaptop()
	nextPhone()

	_, _ = hub.SendToUser(ctx, "bob", json.RawMessage(`{"unread":3}`))
	fmt.Println(nextLaptop())
	fmt.Println(nextPhone())
	// Output:
	// message {"unread":3}
	// message {"unread":3}
}

// Broadcast reaches every connection, in any room or none.
func ExampleHub_Broadcast() {
	hub, _ := switchboard.New(switchboard.Options{Logger: quietLogger()})
	defer hub.Close()
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	ctx := context.Background()
	c, next := exampleClient(ctx, srv, "carol")
	defer c.CloseNow()
	next()
	_, _ = hub.Broadcast(ctx, json.RawMessage(`"maintenance in 5 minutes"`))
	fmt.Println(next())
	// Output: message "maintenance in 5 minutes"
}

// OnlineUsers and Count answer who is connected, and how many connections.
func ExampleHub_OnlineUsers() {
	hub, _ := switchboard.New(switchboard.Options{Logger: quietLogger()})
	defer hub.Close()
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	ctx := context.Background()
	for _, user := range []string{"dave", "erin", "dave"} {
		c, next := exampleClient(ctx, srv, user)
		defer c.CloseNow()
		next() // the welcome frame: the connection is registered
	}
	users, _ := hub.OnlineUsers(ctx)
	fmt.Println(users, hub.Count())
	// Output: [dave erin] 3
}

// Disconnect closes every connection of a user with 4003.
func ExampleHub_Disconnect() {
	hub, _ := switchboard.New(switchboard.Options{Logger: quietLogger()})
	defer hub.Close()
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	ctx := context.Background()
	c, next := exampleClient(ctx, srv, "mallory")
	defer c.CloseNow()
	next()
	_ = hub.Disconnect(ctx, "mallory")
	fmt.Println(next())
	// Output: closed: 4003
}

// Callbacks observe the life cycle of every connection.
func ExampleOptions_callbacks() {
	left := make(chan string, 1)
	hub, _ := switchboard.New(switchboard.Options{
		Logger: quietLogger(),
		OnConnect: func(c *switchboard.Conn) {
			fmt.Println("connected:", c.User())
		},
		OnDisconnect: func(c *switchboard.Conn, code int, reason string) {
			left <- fmt.Sprintf("disconnected: %s %d", c.User(), code)
		},
	})
	defer hub.Close()
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	ctx := context.Background()
	c, next := exampleClient(ctx, srv, "frank")
	next()
	_ = c.Close(websocket.StatusNormalClosure, "bye")
	fmt.Println(<-left)
	// Output:
	// connected: frank
	// disconnected: frank 1000
}
