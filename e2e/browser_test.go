package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBrowser runs node/browser.test.mjs: the demo page in Debian's chromium,
// driven by playwright-core, two browser contexts as two users, against the
// real binary (see the header of that file). Without chromium it fails
// (run scripts/browser-setup.sh) unless SWITCHBOARD_SKIP_BROWSER=1.
//
// Rooms h:* keep history; a tab that reaches the server through a
// cuttableProxy loses its network for a while and must catch up.
func TestBrowser(t *testing.T) {
	chromium := chromiumOrSkip(t)
	shots := os.Getenv("SWITCHBOARD_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(os.TempDir(), "switchboard-screenshots")
	}
	ctx := testContext(t, 4*time.Minute)
	nodeBin, dir := nodeTools(t, ctx, "playwright-core")
	const apiKey = "e2e-browser-key"
	rs := newRestartableServer(t, ctx, "--auth", "none", "--ping-interval", "1s", "--pong-timeout", "1s",
		"--api-key", apiKey, "--history-rooms", "h:*")
	control := rs.serveControl(t)
	proxy := newCuttableProxy(t, rs)
	// rs keeps its address across restarts, so the proxy can aim at it once.
	noWS := newNoUpgradeProxy(t, "http"+strings.TrimPrefix(rs.URL(), "ws"))
	runNodeTests(t, ctx, nodeBin, dir, "browser.test.mjs", 3*time.Minute,
		"SWITCHBOARD_URL="+rs.URL(), "SWITCHBOARD_CONTROL="+control,
		"SWITCHBOARD_API_KEY="+apiKey,
		"SWITCHBOARD_PROXY="+proxy.URL(), "SWITCHBOARD_NET="+proxy.serveControl(t),
		"SWITCHBOARD_NOWS="+noWS.URL(),
		"SWITCHBOARD_SCREENSHOTS="+shots, "CHROMIUM="+chromium)
	if noWS.refused.Load() == 0 {
		t.Error("the page behind the proxy that refuses upgrades never tried a WebSocket")
	}
	t.Logf("screenshots in %s", shots)
}

// cuttableProxy forwards TCP connections from an address of its own on
// loopback to the server, and can make the network between them vanish the
// way a dropped Wi-Fi link does: cut silences the established connections
// (bytes either way are swallowed and nothing is closed, so each end only
// notices through its own timeouts) and resets every new connection;
// restore resets the silenced connections and forwards new ones again.
type cuttableProxy struct {
	ln net.Listener
	rs *restartableServer // forwards to its current address

	mu       sync.Mutex
	down     bool
	refused  int // connections reset while down, since the last cut
	links    map[*proxyLink]struct{}
	closed   bool
	wg       sync.WaitGroup
	silenced int
}

// proxyLink is one forwarded connection.
type proxyLink struct {
	client, server net.Conn
	silent         atomic.Bool
	kill           chan struct{} // closed to end a silenced link
	once           sync.Once
}

func newCuttableProxy(t *testing.T, rs *restartableServer) *cuttableProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{ln: ln, rs: rs, links: map[*proxyLink]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's ws://host:port (the page is at its http://host:port/).
func (p *cuttableProxy) URL() string { return "ws://" + p.ln.Addr().String() }

func (p *cuttableProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down || p.closed {
			p.refused++
			p.mu.Unlock()
			resetConn(c)
			continue
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.forward(c)
	}
}

// forward links c to the server until either end closes (while the link
// is live) or the link is killed (once silenced).
func (p *cuttableProxy) forward(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.rs.URL()[len("ws://"):], 5*time.Second)
	if err != nil {
		resetConn(c)
		return
	}
	l := &proxyLink{client: c, server: s, kill: make(chan struct{})}
	p.mu.Lock()
	if p.down || p.closed {
		p.mu.Unlock()
		resetConn(c)
		resetConn(s)
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go l.pipe(s, c, done)
	go l.pipe(c, s, done)
	<-done
	if l.silent.Load() {
		<-l.kill // a silenced link shows nothing of its end until restore
	}
	resetConn(c)
	resetConn(s)
	<-done
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pipe copies src to dst while the link is live and swallows the bytes
// once it is silenced.
func (l *proxyLink) pipe(dst, src net.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.silent.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil && !l.silent.Load() {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *proxyLink) end() { l.once.Do(func() { close(l.kill) }) }

// resetConn closes c abruptly (RST, no FIN).
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *cuttableProxy) cut() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down, p.refused, p.silenced = true, 0, 0
	for l := range p.links {
		if !l.silent.Swap(true) {
			p.silenced++
		}
	}
	return map[string]int{"silenced": p.silenced}
}

func (p *cuttableProxy) restore() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
	for l := range p.links {
		if l.silent.Load() {
			l.end()
		}
	}
	return map[string]int{"silenced": p.silenced, "refused": p.refused}
}

func (p *cuttableProxy) close() {
	p.mu.Lock()
	p.closed = true
	for l := range p.links {
		l.silent.Store(true)
		l.end()
		resetConn(l.client)
		resetConn(l.server)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// serveControl starts the proxy's control endpoint on loopback: POST /cut
// answers {"silenced": n}, POST /restore {"silenced": n, "refused": n}
// (connections reset while the network was down).
func (p *cuttableProxy) serveControl(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var answer map[string]int
		switch {
		case r.Method != http.MethodPost:
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		case r.URL.Path == "/cut":
			answer = p.cut()
		case r.URL.Path == "/restore":
			answer = p.restore()
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(answer)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}
