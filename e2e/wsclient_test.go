package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// frame is one text frame as it arrived.
type frame struct {
	Raw string
	Msg map[string]any
	At  time.Time
}

func (f frame) typ() string { s, _ := f.Msg["type"].(string); return s }
func (f frame) str(k string) string {
	s, _ := f.Msg[k].(string)
	return s
}

// wsClient is a minimal Switchboard client on github.com/coder/websocket: one
// goroutine reads, answers server pings with pong unless told not to, and
// hands every frame to expect in arrival order.
type wsClient struct {
	conn   *websocket.Conn
	frames chan frame
	done   chan struct{} // closed when the read loop ends
	err    error         // why it ended; read after done

	mu       sync.Mutex
	autoPong bool
	pongs    int
	onPong   func(n int)
	seen     []frame
}

func dialClient(ctx context.Context, url string) (*wsClient, error) {
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"switchboard.v1"}})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	c := &wsClient{conn: conn, frames: make(chan frame, 1024), done: make(chan struct{}), autoPong: true}
	go c.readLoop()
	return c, nil
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	defer close(c.frames)
	for {
		typ, b, err := c.conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		f := frame{Raw: string(b), At: time.Now()}
		if typ != websocket.MessageText || json.Unmarshal(b, &f.Msg) != nil {
			f.Msg = map[string]any{"type": "<not a JSON text frame>"}
		}
		if f.typ() == "ping" {
			c.mu.Lock()
			answer := c.autoPong
			c.mu.Unlock()
			if answer {
				wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				werr := c.conn.Write(wctx, websocket.MessageText, []byte(`{"type":"pong"}`))
				cancel()
				if werr == nil {
					c.mu.Lock()
					c.pongs++
					n, cb := c.pongs, c.onPong
					c.mu.Unlock()
					if cb != nil {
						cb(n)
					}
				}
			}
		}
		c.frames <- f
	}
}

func (c *wsClient) send(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.conn.Write(ctx, websocket.MessageText, b)
}

// expect returns the next frame that matches; the frames skipped on the way
// are kept in c.seen.
func (c *wsClient) expect(ctx context.Context, desc string, match func(frame) bool) (frame, error) {
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return frame{}, fmt.Errorf("connection ended (%v) while waiting for %s", c.err, desc)
			}
			c.mu.Lock()
			c.seen = append(c.seen, f)
			c.mu.Unlock()
			if match(f) {
				return f, nil
			}
		case <-ctx.Done():
			return frame{}, fmt.Errorf("no %s: %w", desc, ctx.Err())
		}
	}
}

// request sends v (which must carry "id") and waits for its ack.
func (c *wsClient) request(ctx context.Context, v map[string]any) (frame, error) {
	id, _ := v["id"].(string)
	if err := c.send(ctx, v); err != nil {
		return frame{}, err
	}
	f, err := c.expect(ctx, "answer to "+id, func(f frame) bool {
		return (f.typ() == "ack" || f.typ() == "error") && f.str("ref") == id
	})
	if err == nil && f.typ() != "ack" {
		err = fmt.Errorf("request %v answered %s", v, f.Raw)
	}
	return f, err
}

func (c *wsClient) close() {
	_ = c.conn.CloseNow()
	<-c.done
}
