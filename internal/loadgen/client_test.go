package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// statusReader reads a worker's status lines.
type statusReader struct {
	t     *testing.T
	lines chan Status
}

func readStatus(t *testing.T, r io.Reader) *statusReader {
	s := &statusReader{t: t, lines: make(chan Status, 64)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var st Status
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				s.lines <- st
			}
		}
	}()
	return s
}

// until returns the first status line that satisfies cond.
func (s *statusReader) until(what string, cond func(Status) bool) Status {
	s.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case st, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("the worker stopped before %s", what)
			}
			if cond(st) {
				return st
			}
		case <-deadline:
			s.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Subscribers that are Go clients join through a real hub, time every
// message that carries a send time, report them like raw connections do,
// and count a close by the server with its code.
func TestClientSubscribers(t *testing.T) {
	hub, err := switchboard.New(switchboard.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	defer hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	cfg := Config{Addr: strings.TrimPrefix(srv.URL, "http://"), Conns: 3, Room: "r", UserPrefix: "p", Client: true, Timeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() {
		done <- RunWorker(ctx, cfg, inR, outW)
		_ = outW.Close()
	}()
	st := readStatus(t, outR)
	st.until("3 joined", func(s Status) bool { return s.Joined == 3 })

	const n = 5
	for i := range n {
		if _, err := hub.Publish(ctx, "r", json.RawMessage(appendData(nil, int64(i), ""))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hub.Publish(ctx, "r", json.RawMessage(`"no send time"`)); err != nil {
		t.Fatal(err)
	}
	st.until("15 timed messages", func(s Status) bool { return s.Msgs == 3*n && s.Frames >= 3*(n+1) })
	if _, err := io.WriteString(inW, "report\n"); err != nil {
		t.Fatal(err)
	}
	rep := st.until("the report", func(s Status) bool { return s.Kind == "report" })
	if rep.Hist == nil || rep.Hist.Count() != 3*n || rep.MinPerConn != n || rep.MaxPerConn != n || rep.Failed != 0 {
		t.Fatalf("report %+v", rep)
	}

	if err := hub.Disconnect(ctx, "p0"); err != nil {
		t.Fatal(err)
	}
	st.until("the kick counted", func(s Status) bool { return s.Closed == 1 && s.CloseCodes["4003"] == 1 })
	if _, err := io.WriteString(inW, "quit\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("RunWorker: %v", err)
	}
	_ = inW.Close()
	for range st.lines { // until the reader goroutine is gone
	}
}

func TestClientPublisherRefused(t *testing.T) {
	err := RunWorker(context.Background(), Config{Client: true, Publish: true}, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "subscribes only") {
		t.Fatalf("a Go client publisher: %v", err)
	}
}
