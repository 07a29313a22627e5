package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// sseEvent is one event of a text/event-stream.
type sseEvent struct {
	name, id string
	frame    map[string]any // the data, decoded
}

// readEvents parses an event stream into events until it ends, then
// closes out. A malformed line or non-JSON data ends it with an error.
func readEvents(r io.Reader, out chan<- sseEvent) error {
	defer close(out)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var name, id string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data == nil {
				continue
			}
			ev := sseEvent{name: name, id: id}
			if err := json.Unmarshal([]byte(strings.Join(data, "\n")), &ev.frame); err != nil {
				return fmt.Errorf("event data %q: %w", data, err)
			}
			out <- ev
			name, id, data = "", "", nil
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		default:
			return fmt.Errorf("line %q is not event-stream", line)
		}
	}
	return sc.Err()
}

// sseStream is an event stream opened with net/http, as a backend or a
// non-browser client would.
type sseStream struct {
	t       *testing.T
	base    string
	events  chan sseEvent
	session string
}

func openStream(t *testing.T, ctx context.Context, base, query string) *sseStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s/sse: %v", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s/sse: %d %s", base, resp.StatusCode, b)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	s := &sseStream{t: t, base: base, events: make(chan sseEvent, 256)}
	go func() {
		if err := readEvents(resp.Body, s.events); err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("event stream: %v", err)
		}
	}()
	w := s.expect(ctx, "the welcome", func(e sseEvent) bool { return e.frame["type"] == "welcome" })
	s.session, _ = w.frame["session"].(string)
	return s
}

// expect skips events until one matches.
func (s *sseStream) expect(ctx context.Context, what string, match func(sseEvent) bool) sseEvent {
	s.t.Helper()
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				s.t.Fatalf("stream ended while waiting for %s", what)
			}
			if match(e) {
				return e
			}
		case <-ctx.Done():
			s.t.Fatalf("no %s in time", what)
		}
	}
}

// post sends frames (one per line) to base/sse with the stream's session.
func (s *sseStream) post(ctx context.Context, base, body string) int {
	s.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/sse", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Switchboard-Session", s.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("POST %s/sse: %v", base, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}
