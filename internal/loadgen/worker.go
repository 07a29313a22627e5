package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// Config describes the connections one worker process holds. A worker is
// either a set of subscribers (Publish false) or one publisher.
type Config struct {
	Addr       string   // server host:port
	Path       string   // WebSocket path, default "/ws"
	Conns      int      // connections to open
	First      int      // index of the first connection, for user names and source addresses
	Users      int      // distinct users; connection i is user i mod Users (0: one user per connection)
	UserPrefix string   // user ids are UserPrefix + number
	Room       string   // room every connection joins
	LocalAddrs []string // source IPs, used round-robin by connection index
	Parallel   int      // concurrent dials
	Timeout    time.Duration
	// Client makes the subscribers client.Client instances of the Go
	// client package instead of raw connections (see runClient); not for
	// a publisher.
	Client bool
	// Deflate offers permessage-deflate (subscribers inflate what the
	// server compresses).
	Deflate bool

	// Publisher only.
	Publish  bool
	Messages int
	Size     int     // approximate bytes of data per message
	Rate     float64 // publishes per second; 0 = as fast as possible
	// Realistic fills the data with dashboard-like JSON (repeating keys,
	// varying numbers) instead of one run of "x", so that compression
	// gains what it would on live data.
	Realistic bool
	// PublishVia is ViaAPI (the default) or ViaWS. Through the API the
	// publisher holds no WebSocket connection (Conns is ignored) and counts
	// as joined once its HTTP connections are open.
	PublishVia string
	Publishers int    // concurrent keep-alive HTTP publishers (ViaAPI; default 4)
	APIKey     string // the server's API key (ViaAPI)
}

// Status is one line a worker writes to its stdout, as JSON.
type Status struct {
	Kind     string `json:"kind"` // "status", "report" or "published"
	Dialed   int64  `json:"dialed"`
	Welcomed int64  `json:"welcomed"`
	Joined   int64  `json:"joined"`
	Failed   int64  `json:"failed"`
	Closed   int64  `json:"closed"`
	Frames   int64  `json:"frames"`
	Msgs     int64  `json:"msgs"`
	Pings    int64  `json:"pings"`
	Errors   int64  `json:"errors"` // error frames from the server
	FirstErr string `json:"first_err,omitempty"`

	CloseCodes map[string]int64 `json:"close_codes,omitempty"`
	LastRecvNs int64            `json:"last_recv_ns,omitempty"`

	// Report only: latency histogram and per-connection message counts.
	Hist       *HistData `json:"hist,omitempty"`
	MinPerConn int64     `json:"min_per_conn,omitempty"`
	MaxPerConn int64     `json:"max_per_conn,omitempty"`

	// Publisher only.
	Published int64 `json:"published,omitempty"`
	PubStart  int64 `json:"pub_start_ns,omitempty"`
	PubEnd    int64 `json:"pub_end_ns,omitempty"`
}

type worker struct {
	cfg Config
	out *json.Encoder
	omu sync.Mutex

	dialed, welcomed, joined, failed, closed atomic.Int64
	frames, msgs, pings, errs, lastRecv      atomic.Int64

	mu         sync.Mutex
	firstErr   string
	closeCodes map[string]int64
	conns      []*Conn
	clients    []*client.Client
	perConn    []atomic.Int64

	hist Histogram
	pub  *Conn
}

// RunWorker opens cfg.Conns connections, reports progress as JSON lines on
// out every 250ms and obeys commands read from in, one per line: "report"
// (write a final report line), "go" (publisher: start publishing) and
// "quit". It returns when in reaches EOF, on "quit", or when ctx ends.
func RunWorker(ctx context.Context, cfg Config, in io.Reader, out io.Writer) error {
	if cfg.Path == "" {
		cfg.Path = "/ws"
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.PublishVia == "" {
		cfg.PublishVia = ViaAPI
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = 4
	}
	if cfg.Client && cfg.Publish {
		return errors.New("loadgen: the Go client subscribes only; the publisher is a raw connection or the API")
	}
	viaAPI := cfg.Publish && cfg.PublishVia == ViaAPI
	if viaAPI {
		cfg.Conns = 0
	}
	w := &worker{cfg: cfg, out: json.NewEncoder(out), closeCodes: map[string]int64{}}
	w.conns = make([]*Conn, cfg.Conns)
	w.clients = make([]*client.Client, cfg.Conns)
	w.perConn = make([]atomic.Int64, cfg.Conns)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer w.closeAll()

	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case cmds <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	var api *http.Client
	if viaAPI {
		api = w.apiClient(cfg.Publishers)
		defer api.CloseIdleConnections()
		go func() {
			if err := w.warmAPI(ctx, api); err != nil {
				w.failed.Add(1)
				w.fail(err)
				return
			}
			w.dialed.Add(1)
			w.welcomed.Add(1)
			w.joined.Add(1)
		}()
	} else {
		go w.connectAll(ctx)
	}

	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			w.emit(w.status("status"))
		case cmd, ok := <-cmds:
			if !ok || cmd == "quit" {
				return nil
			}
			switch cmd {
			case "report":
				w.emit(w.report())
			case "go":
				if viaAPI {
					if w.joined.Load() == 0 {
						w.fail(errors.New("go: publisher connections not open"))
						continue
					}
					go w.publishAPI(ctx, api)
					continue
				}
				if w.pub == nil {
					w.fail(errors.New("go: publisher not joined"))
					continue
				}
				go w.publish(ctx)
			default:
				w.fail(fmt.Errorf("unknown command %q", cmd))
			}
		}
	}
}

func (w *worker) emit(s Status) {
	w.omu.Lock()
	defer w.omu.Unlock()
	_ = w.out.Encode(s)
}

func (w *worker) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.firstErr == "" {
		w.firstErr = err.Error()
	}
}

func (w *worker) status(kind string) Status {
	s := Status{
		Kind: kind, Dialed: w.dialed.Load(), Welcomed: w.welcomed.Load(), Joined: w.joined.Load(),
		Failed: w.failed.Load(), Closed: w.closed.Load(), Frames: w.frames.Load(), Msgs: w.msgs.Load(),
		Pings: w.pings.Load(), Errors: w.errs.Load(), LastRecvNs: w.lastRecv.Load(),
	}
	w.mu.Lock()
	s.FirstErr = w.firstErr
	if len(w.closeCodes) > 0 {
		s.CloseCodes = make(map[string]int64, len(w.closeCodes))
		for k, v := range w.closeCodes {
			s.CloseCodes[k] = v
		}
	}
	w.mu.Unlock()
	return s
}

func (w *worker) report() Status {
	s := w.status("report")
	h := w.hist.Snapshot()
	s.Hist = &h
	if !w.cfg.Publish && len(w.perConn) > 0 {
		s.MinPerConn = w.perConn[0].Load()
		for i := range w.perConn {
			n := w.perConn[i].Load()
			s.MinPerConn = min(s.MinPerConn, n)
			s.MaxPerConn = max(s.MaxPerConn, n)
		}
	}
	return s
}

func (w *worker) closeAll() {
	w.mu.Lock()
	clients := append([]*client.Client(nil), w.clients...)
	for _, c := range w.conns {
		if c != nil {
			_ = c.Close()
		}
	}
	w.mu.Unlock()
	// Outside the lock: a client's Close waits for its goroutines, whose
	// OnState may take it.
	for _, c := range clients {
		if c != nil {
			_ = c.Close()
		}
	}
}

func (w *worker) connectAll(ctx context.Context) {
	sem := make(chan struct{}, w.cfg.Parallel)
	for i := 0; i < w.cfg.Conns; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if w.cfg.Client {
			go w.runClient(ctx, i, sem)
		} else {
			go w.runConn(ctx, i, sem)
		}
	}
}

func (w *worker) userOf(i int) string {
	n := w.cfg.First + i
	if w.cfg.Users > 0 {
		n %= w.cfg.Users
	}
	return w.cfg.UserPrefix + strconv.Itoa(n)
}

// runConn dials connection i, waits for welcome, joins, releases its slot
// in sem and then reads until the connection ends.
func (w *worker) runConn(ctx context.Context, i int, sem chan struct{}) {
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
	dctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	target := w.cfg.Path + "?user=" + url.QueryEscape(w.userOf(i))
	c, err := DialDeflate(dctx, d, w.cfg.Addr, target, w.cfg.Deflate)
	if err != nil {
		w.failed.Add(1)
		w.fail(fmt.Errorf("conn %d: %w", w.cfg.First+i, err))
		return
	}
	w.mu.Lock()
	w.conns[i] = c
	w.mu.Unlock()
	w.dialed.Add(1)
	join := []byte(`{"type":"join","room":` + strconv.Quote(w.cfg.Room) + `,"id":"j"}`)
	if w.cfg.Publish {
		join = []byte(`{"type":"join","room":` + strconv.Quote(w.cfg.Room) + `,"id":"j","echo":false}`)
	}
	joined := false
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			if !joined {
				w.failed.Add(1)
				w.fail(fmt.Errorf("conn %d before join: %w", w.cfg.First+i, err))
			} else {
				w.closed.Add(1)
			}
			w.noteClose(err)
			_ = c.Close()
			return
		}
		now := time.Now().UnixNano()
		w.frames.Add(1)
		switch frameType(p) {
		case "message":
			if t, ok := sendTime(p); ok {
				w.hist.Record(time.Duration(now - t))
				w.msgs.Add(1)
				w.perConn[i].Add(1)
				w.lastRecv.Store(now)
			}
		case "ping":
			w.pings.Add(1)
			if err := c.WriteText(pongFrame); err != nil {
				w.fail(fmt.Errorf("conn %d pong: %w", w.cfg.First+i, err))
			}
		case "welcome":
			w.welcomed.Add(1)
			if err := c.WriteText(join); err != nil {
				w.fail(fmt.Errorf("conn %d join: %w", w.cfg.First+i, err))
			}
		case "ack":
			if !joined && bytes.Contains(p, []byte(`"ref":"j"`)) {
				joined = true
				if w.cfg.Publish {
					w.mu.Lock()
					w.pub = c
					w.mu.Unlock()
				}
				w.joined.Add(1)
				release()
			}
		case "error":
			w.errs.Add(1)
			w.fail(fmt.Errorf("conn %d: server error frame: %.200s", w.cfg.First+i, p))
		}
	}
}

func (w *worker) noteClose(err error) {
	code := "eof"
	var ce *CloseError
	if errors.As(err, &ce) {
		code = strconv.Itoa(ce.Code)
	} else if !errors.Is(err, io.EOF) {
		code = "error"
	}
	w.mu.Lock()
	w.closeCodes[code]++
	w.mu.Unlock()
}

var pongFrame = []byte(`{"type":"pong"}`)

// frameType returns the "type" of a server frame without decoding it.
func frameType(p []byte) string {
	const key = `"type":"`
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return ""
	}
	rest := p[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	switch string(rest[:j]) { // no allocation for these comparisons
	case "message":
		return "message"
	case "ping":
		return "ping"
	case "welcome":
		return "welcome"
	case "ack":
		return "ack"
	case "error":
		return "error"
	}
	return "other"
}

// sendKey marks the publisher's send time (unix ns) inside data.
const sendKey = `"bench_t":`

func sendTime(p []byte) (int64, bool) {
	i := bytes.Index(p, []byte(sendKey))
	if i < 0 {
		return 0, false
	}
	var t int64
	digits := 0
	for _, b := range p[i+len(sendKey):] {
		if b < '0' || b > '9' {
			break
		}
		t = t*10 + int64(b-'0')
		digits++
	}
	return t, digits > 0
}
