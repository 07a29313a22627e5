package switchboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// sseEvent is one event read from a stream.
type sseEvent struct {
	name string // "" for a frame, "close" for the end
	id   string
	data string
}

// sseClient is a real event-stream client over net/http: a GET whose body
// is parsed in the background, and POSTs for requests.
type sseClient struct {
	t       *testing.T
	base    string // http://host:port/sse
	resp    *http.Response
	events  chan sseEvent
	done    chan struct{}
	quit    chan struct{}
	once    sync.Once
	err     error
	welcome frame
	session string
	lastID  string
}

// openSSE opens a stream with the given query and headers and returns the
// response (for a refused one) or the client, once its welcome arrived.
func openSSE(t *testing.T, s *testServer, query string, hdr http.Header) (*sseClient, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/sse?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /sse: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil, resp
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	c := &sseClient{t: t, base: "http://" + s.addr + "/sse", resp: resp,
		events: make(chan sseEvent, 1024), done: make(chan struct{}), quit: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() {
		c.once.Do(func() { close(c.quit) })
		cancel()
		resp.Body.Close()
		<-c.done
	})
	c.welcome = c.expect("welcome")
	c.session = c.welcome.str("session")
	if c.session == "" {
		t.Fatalf("welcome without a session: %v", c.welcome)
	}
	return c, resp
}

func (c *sseClient) readLoop() {
	defer close(c.done)
	br := bufio.NewReader(c.resp.Body)
	var ev sseEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.err = err
			return
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data == nil {
				continue
			}
			ev.data = strings.Join(data, "\n")
			select {
			case c.events <- ev:
			case <-c.quit:
				return
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		case strings.HasPrefix(line, "event:"):
			ev.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "id:"):
			ev.id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		default:
			c.err = fmt.Errorf("unexpected line %q", line)
			return
		}
	}
}

// nextEvent returns the next event, failing the test after the deadline.
func (c *sseClient) nextEvent() sseEvent {
	c.t.Helper()
	select {
	case ev := <-c.events:
		if ev.id != "" {
			c.lastID = ev.id
		}
		return ev
	case <-c.done:
		select {
		case ev := <-c.events:
			return ev
		default:
		}
		c.t.Fatalf("stream ended while waiting for an event: %v", c.err)
	case <-time.After(wait):
		c.t.Fatalf("no event within %v", wait)
	}
	return sseEvent{}
}

// next returns the next frame; a close event fails the test.
func (c *sseClient) next() frame {
	c.t.Helper()
	ev := c.nextEvent()
	if ev.name != "" {
		c.t.Fatalf("got %q event %s, want a frame", ev.name, ev.data)
	}
	var f frame
	if err := json.Unmarshal([]byte(ev.data), &f); err != nil {
		c.t.Fatalf("event data %q is not JSON: %v", ev.data, err)
	}
	return f
}

func (c *sseClient) expect(typ string) frame {
	c.t.Helper()
	f := c.next()
	if f.str("type") != typ {
		c.t.Fatalf("got %v, want a %s frame", f, typ)
	}
	return f
}

// expectClose skips frames until the close event and returns its code and
// reason; the stream must end right after it.
func (c *sseClient) expectClose() (int, string) {
	c.t.Helper()
	for {
		ev := c.nextEvent()
		if ev.name != "close" {
			continue
		}
		var cl struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(ev.data), &cl); err != nil {
			c.t.Fatalf("close event %q: %v", ev.data, err)
		}
		select {
		case <-c.done:
		case <-time.After(wait):
			c.t.Fatalf("stream still open %v after its close event", wait)
		}
		return cl.Code, cl.Reason
	}
}

// post sends body with the client's session and returns the status.
func (c *sseClient) post(body string) int {
	c.t.Helper()
	return sessionRequest(c.t, http.MethodPost, c.base, c.session, body)
}

func sessionRequest(t *testing.T, method, url, session, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if session != "" {
		req.Header.Set(switchboard.SessionHeader, session)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s /sse: %v", method, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (c *sseClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	if st := c.post(string(b)); st != http.StatusNoContent {
		c.t.Fatalf("POST %s: status %d, want 204", b, st)
	}
}

// request sends a frame with an id and returns the ack or error for it,
// collecting the frames that came before.
func (c *sseClient) request(v map[string]any) (answer frame, others []frame) {
	c.t.Helper()
	return requestOn(c.t, c.send, c.next, v)
}

func (c *sseClient) mustAck(v map[string]any) frame {
	c.t.Helper()
	return mustAckOn(c.t, c.send, c.next, v)
}
