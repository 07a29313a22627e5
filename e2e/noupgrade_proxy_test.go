package e2e

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// noUpgradeProxy is an HTTP reverse proxy of the kind that breaks
// WebSockets: it forwards plain requests (pages, the API, event streams,
// POSTs) and refuses every upgrade with 403, as some corporate proxies
// do. refused counts the upgrades it turned away.
type noUpgradeProxy struct {
	srv     *http.Server
	ln      net.Listener
	refused atomic.Int64
}

func newNoUpgradeProxy(t *testing.T, target string) *noUpgradeProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	// The incoming Host header is kept, so the server sees the page's own
	// origin as same-origin.
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // pass every event on at once (event streams are flushed anyway)
	p := &noUpgradeProxy{}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			p.refused.Add(1)
			http.Error(w, "WebSocket blocked by this proxy", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	if p.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.srv.Serve(p.ln) }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

func (p *noUpgradeProxy) URL() string { return "http://" + p.ln.Addr().String() }
