// Package server is the ready-to-run Switchboard server: configuration,
// authentication, the WebSocket endpoint on nbio's event-driven engine,
// the backend HTTP API, Prometheus metrics, presence webhooks, health
// checks and the demo page.
//
// It is the outermost layer of the library: it imports the root package,
// the brokers, metrics and config, and nothing imports it but the command
// (internal/layers checks).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lesismal/nbio/nbhttp"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/server/config"
	"github.com/switchboardhq/switchboard/web"
)

// Server is one Switchboard node.
type Server struct {
	cfg *config.Config
	log *slog.Logger
	Hub *switchboard.Hub
	mux *http.ServeMux
	api http.Handler // /api/*: the backend API, or a 404 saying it is off
	// keys are the reloadable token verification keys (see ReloadKeys);
	// nil without --jwt-public-key or --jwks-file.
	keys *keySet
	// metrics is the node's Prometheus registry, served at /metrics.
	metrics *metrics
	// hooks delivers presence webhooks; nil without --webhook-url.
	hooks *webhooks
	// broker carries messages between nodes (in memory for one node).
	broker switchboard.Broker
	// admin is the dashboard at /admin; nil without --admin.
	admin *admin

	mu        sync.Mutex
	addr      net.Addr
	pprofAddr net.Addr
	ready     bool
}

// New builds a node from a validated configuration.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	auth, keys, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	broker, err := newBroker(cfg, log)
	if err != nil {
		return nil, err
	}
	m := newMetrics(cfg.NodeID)
	var hooks *webhooks
	var onPresence func(switchboard.PresenceEvent)
	if cfg.WebhookURL != "" {
		hooks = newWebhooks(webhookOptions{
			URL: cfg.WebhookURL, Secret: cfg.WebhookSecret, Node: cfg.NodeID, MaxAge: cfg.WebhookMaxAge,
			RoomEvents: cfg.WebhookRoomEvents, Log: log, Count: m.webhook,
		})
		onPresence = hooks.Enqueue
	}
	var adm *admin
	var onNodeMessage func(string, []byte)
	if cfg.Admin {
		_, single := broker.(*switchboard.MemoryBroker)
		adm = newAdmin(cfg, log, m, !single)
		onNodeMessage = adm.stats.receive
	}
	hub, err := switchboard.New(switchboard.Options{
		OnNodeMessage:  onNodeMessage,
		Broker:         broker,
		Observer:       m,
		OnPresence:     onPresence,
		Authenticate:   auth,
		AllowedOrigins: cfg.AllowedOrigins,
		PingInterval:   cfg.PingInterval,
		PongTimeout:    cfg.PongTimeout,
		NodeID:         cfg.NodeID,
		PresenceTTL:    cfg.PresenceTTL,
		Logger:         log,
		Limits: switchboard.Limits{
			MaxMessageBytes: cfg.MaxMessageBytes,
			Rate:            cfg.Rate,
			Burst:           cfg.Burst,
			MaxConnsPerUser: cfg.MaxConnsPerUser,
			PerUserPolicy:   switchboard.PerUserPolicy(cfg.PerUserPolicy),
			MaxConns:        cfg.MaxConns,
			MaxRooms:        cfg.MaxRooms,
			QueueBytes:      cfg.QueueBytes,
			WriteTimeout:    cfg.WriteTimeout,
			MaxDataBytes:    cfg.MaxDataBytes,
			HandshakeRate:   cfg.HandshakeRate,
			HandshakeBurst:  cfg.HandshakeBurst,
		},
		ReadOnlyRooms: cfg.ReadOnlyRooms,
		Compression:   switchboard.CompressionOptions{Enabled: cfg.Compression, Threshold: cfg.CompressionThreshold},
		History: switchboard.HistoryOptions{
			Rooms: cfg.HistoryRooms, Users: cfg.HistoryUsers, Size: cfg.HistorySize, TTL: cfg.HistoryTTL,
		},
	})
	if err != nil {
		if hooks != nil {
			hooks.Close(context.Background())
		}
		_ = broker.Close()
		return nil, fmt.Errorf("start hub: %w", err)
	}
	m.attachHub(hub, broker)
	s := &Server{cfg: cfg, log: log, Hub: hub, mux: http.NewServeMux(), keys: keys, metrics: m, hooks: hooks, broker: broker, admin: adm}
	if adm != nil {
		adm.attach(hub)
	}
	s.mux.Handle("GET /ws", hub.Handler())
	if cfg.SSE {
		sse := hub.SSEHandler()
		s.mux.Handle("GET /sse", sse)
		s.mux.Handle("POST /sse", sse)
		s.mux.Handle("DELETE /sse", sse)
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /stats", s.publicStats)
	s.mux.Handle("GET /metrics", m.handler())
	s.api = http.HandlerFunc(apiOff)
	if len(cfg.APIKeys) > 0 {
		a := newAPI(hub, cfg.APIKeys, log, m)
		a.shared = sharedIdempotency(broker)
		s.api = a
	}
	s.mux.Handle("GET /", web.Handler())
	return s, nil
}

// Handler is everything the node serves over HTTP.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.route) }

// route sends /api/* to the API, which answers every method itself (JSON
// 404 and 405), and the rest to the mux, whose "GET /" (the demo page)
// cannot share a pattern set with a method-less "/api/".
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		s.api.ServeHTTP(w, r)
		return
	}
	if isAdminPath(r.URL.Path) {
		if s.admin == nil {
			adminOff(w, r)
			return
		}
		s.admin.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	ready = ready && brokerReady(s.broker)
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"not_ready"}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
}

// publicStats serves this node's counts (numbers only, never names) for
// the demo page and simple dashboards, without an API key.
func (s *Server) publicStats(w http.ResponseWriter, _ *http.Request) {
	st := s.Hub.Stats()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = fmt.Fprintf(w, `{"connections":%d,"users":%d,"rooms":%d}`+"\n", st.Connections, st.Users, st.Rooms)
}

// Close stops a node that was built with New but never Run: the hub at
// once, and the webhooks after what is queued, within ctx.
func (s *Server) Close(ctx context.Context) error {
	s.closeAdmin()
	err := s.Hub.Close()
	if s.hooks != nil {
		s.hooks.Close(ctx)
	}
	return err
}

// PprofAddr is the bound --pprof address once Run has started it, else nil.
func (s *Server) PprofAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pprofAddr
}

// Addr is the bound listen address, once Run has started listening.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run serves until ctx ends, then drains: new handshakes are refused,
// connections are closed 1001 and given up to the shutdown timeout to
// take what is queued for them. started, if not nil, is called with the
// bound address once the node accepts connections.
func (s *Server) Run(ctx context.Context, started func(net.Addr)) error {
	// No TCP keepalive on accepted connections: WebSocket liveness is the
	// hub's ping/pong with its known bound, and an idle API connection is
	// closed by the engine's keepalive time. Go would otherwise make four
	// setsockopt calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listen on %s: %w (another server is using the port: stop it, or pick another, e.g. --addr=127.0.0.1:0)", s.cfg.Addr, err)
		}
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	stopPprof := func() error { return nil }
	if s.cfg.PprofAddr != "" {
		paddr, stop, err := startPprof(s.cfg.PprofAddr, s.log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		stopPprof = stop
		s.mu.Lock()
		s.pprofAddr = paddr
		s.mu.Unlock()
	}
	stop, err := s.serve(ln)
	if err != nil {
		_ = ln.Close()
		return errors.Join(err, stopPprof())
	}
	s.mu.Lock()
	s.addr, s.ready = ln.Addr(), true
	s.mu.Unlock()
	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String()+"/",
		"auth", s.cfg.Auth, "node_id", s.cfg.NodeID, "tls", s.cfg.TLSCert != "", "broker", s.cfg.Broker)
	if started != nil {
		started(ln.Addr())
	}
	go s.reportCounts(ctx)
	<-ctx.Done()

	s.mu.Lock()
	s.ready = false
	s.mu.Unlock()
	s.log.Info("shutting down", "connections", s.Hub.Count(), "timeout", s.cfg.ShutdownTimeout.String())
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.closeAdmin()
	herr := s.Hub.Shutdown(dctx)
	if s.hooks != nil { // after the hub: its last user.offline events are queued by now
		// At least a short moment even when the drain used the whole timeout.
		hctx, hcancel := context.WithTimeout(context.Background(), max(time.Until(deadlineOf(dctx)), time.Second))
		s.hooks.Close(hctx)
		hcancel()
	}
	// The listener and pollers stop on a context of their own: an expired
	// drain deadline must not leave them running.
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	serr := stop(sctx)
	perr := stopPprof()
	if errors.Is(herr, context.DeadlineExceeded) {
		s.log.Warn("shutdown timeout reached; remaining connections were cut")
		herr = nil
	}
	s.log.Info("stopped")
	return errors.Join(herr, serr, perr)
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// serve starts the HTTP side on ln: nbio's engine for plain TCP (no
// goroutine per idle connection), net/http for TLS.
func (s *Server) serve(ln net.Listener) (func(context.Context) error, error) {
	if s.cfg.TLSCert != "" {
		srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: s.cfg.HandshakeTimeout, IdleTimeout: s.cfg.HandshakeTimeout, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
		go func() {
			if err := srv.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("TLS server stopped", "error", err)
			}
		}()
		return srv.Shutdown, nil
	}
	routeNBIOLogs(s.log)
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network: "tcp",
		Addrs:   []string{ln.Addr().String()},
		Listen:  func(string, string) (net.Listener, error) { return ln, nil },
		Handler: s.Handler(),
		MaxLoad: s.cfg.MaxConns + 1024, // the hub answers 503 itself; leave room for those answers
		// A connection must complete its HTTP request within this; after the
		// upgrade the hub clears the deadline and liveness takes over.
		KeepaliveTime: s.cfg.HandshakeTimeout,
		// nbhttp buffers a whole request body before any handler (and so
		// before the API key check) runs: bound it by the API's own limit.
		// The WebSocket upgrade carries no body.
		MaxHTTPBodySize:         apiMaxBody + 4096,
		ReleaseWebsocketPayload: true,
		ReadBufferSize:          4096,
	})
	switchboard.ConfigureEngine(engine)
	if err := engine.Start(); err != nil {
		return nil, fmt.Errorf("start engine: %w", err)
	}
	return engine.Shutdown, nil
}

// reportCounts logs connection counts every minute while they change.
func (s *Server) reportCounts(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	var last switchboard.Stats
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if st := s.Hub.Stats(); st != last {
				last = st
				s.log.Info("counts", "online_count", st.Connections, "users", st.Users, "rooms", st.Rooms)
			}
		}
	}
}
