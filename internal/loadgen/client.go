package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// runClient holds subscriber i as a client.Client of the project's Go
// client package instead of a raw connection: what an application using
// the package sees. Its latency runs from the publisher's send time to the
// message coming out of the client's Messages channel, so it includes the
// client's decoding and hand-over, which the raw connections skip. It
// costs far more memory per connection than a raw one, which is why the
// bench holds only a few of these.
func (w *worker) runClient(ctx context.Context, i int, sem chan struct{}) {
	released := false
	release := func() {
		if !released {
			released = true
			<-sem
		}
	}
	defer release()
	d := &net.Dialer{}
	if n := len(w.cfg.LocalAddrs); n > 0 {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(w.cfg.LocalAddrs[(w.cfg.First+i)%n])}
	}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	dctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	u := "ws://" + w.cfg.Addr + w.cfg.Path + "?user=" + url.QueryEscape(w.userOf(i))
	c, err := client.Dial(dctx, u, &client.Options{
		HTTPClient: &http.Client{Transport: tr},
		OnState: func(sc client.StateChange) {
			if sc.State == client.StateReconnecting {
				w.closed.Add(1) // it comes back by itself; the run still counts the loss
				w.noteClientClose(sc.Err)
			}
		},
	})
	if err != nil {
		w.failed.Add(1)
		w.fail(fmt.Errorf("client %d: %w", w.cfg.First+i, err))
		return
	}
	w.mu.Lock()
	w.clients[i] = c
	w.mu.Unlock()
	w.dialed.Add(1)
	w.welcomed.Add(1)
	if _, err := c.Join(dctx, w.cfg.Room); err != nil {
		w.failed.Add(1)
		w.fail(fmt.Errorf("client %d join: %w", w.cfg.First+i, err))
		_ = c.Close()
		return
	}
	w.joined.Add(1)
	release()
	go func() { // presence events count as frames, as on a raw connection
		for range c.Events() {
			w.frames.Add(1)
		}
	}()
	for m := range c.Messages() {
		now := time.Now().UnixNano()
		w.frames.Add(1)
		if t, ok := sendTime(m.Data); ok {
			w.hist.Record(time.Duration(now - t))
			w.msgs.Add(1)
			w.perConn[i].Add(1)
			w.lastRecv.Store(now)
		}
	}
	// Messages is closed: the client stopped, by Close or by a close code
	// that forbids reconnecting.
	if err := c.Err(); err != nil {
		w.closed.Add(1)
		w.noteClientClose(err)
	}
}

func (w *worker) noteClientClose(err error) {
	code := "error"
	var ce *client.CloseError
	if errors.As(err, &ce) {
		code = strconv.Itoa(ce.Code)
	}
	w.mu.Lock()
	w.closeCodes[code]++
	w.mu.Unlock()
}
