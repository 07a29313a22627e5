package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Publish paths a publisher can take.
const (
	// ViaAPI posts each message to /api/publish, as a backend does, from
	// Config.Publishers concurrent keep-alive HTTP connections.
	ViaAPI = "api"
	// ViaWS sends each message as a publish frame on the publisher's own
	// WebSocket connection.
	ViaWS = "ws"
)

// apiClient returns an HTTP client holding up to n keep-alive connections
// to the server, from the first source address when there are any.
func (w *worker) apiClient(n int) *http.Client {
	d := &net.Dialer{Timeout: w.cfg.Timeout}
	if len(w.cfg.LocalAddrs) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(w.cfg.LocalAddrs[0])}
	}
	return &http.Client{Timeout: w.cfg.Timeout, Transport: &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		MaxConnsPerHost:     n,
		DisableCompression:  true,
	}}
}

// warmAPI opens the publishers' keep-alive connections before the
// measured run, with one authenticated GET /api/stats each, so that the
// run measures publishing and not TCP set-up.
func (w *worker) warmAPI(ctx context.Context, cl *http.Client) error {
	n := w.cfg.Publishers
	errs := make(chan error, n)
	var start sync.WaitGroup
	start.Add(n)
	for range n {
		go func() {
			start.Done()
			start.Wait() // all at once, so that each takes a connection of its own
			errs <- w.apiCall(ctx, cl, http.MethodGet, "/api/stats", nil)
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	return nil
}

func (w *worker) apiCall(ctx context.Context, cl *http.Client, method, path string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+w.cfg.Addr+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+w.cfg.APIKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %.200s", method, path, resp.Status, answer)
	}
	return nil
}

// publishAPI posts cfg.Messages messages to /api/publish from
// cfg.Publishers goroutines, each on its own keep-alive connection and
// each waiting for its answer before the next request, paced together at
// cfg.Rate per second (0: back to back). Then it writes a "published" line.
func (w *worker) publishAPI(ctx context.Context, cl *http.Client) {
	prefix := `{"room":` + strconv.Quote(w.cfg.Room) + `,"data":`
	pad := filler(w.cfg.Size, w.cfg.Realistic)
	var interval time.Duration
	if w.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) / w.cfg.Rate)
	}
	var next, sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range w.cfg.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(w.cfg.Messages) {
					return
				}
				if interval > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
				}
				buf = append(appendData(append(buf[:0], prefix...), i, pad), '}')
				if err := w.apiCall(ctx, cl, http.MethodPost, "/api/publish", buf); err != nil {
					w.fail(fmt.Errorf("publish %d: %w", i, err))
					w.errs.Add(1)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	s := w.status("published")
	s.Published = sent.Load()
	s.PubStart = start.UnixNano()
	s.PubEnd = time.Now().UnixNano()
	w.emit(s)
}
