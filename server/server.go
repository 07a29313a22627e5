// Package server is the ready-to-run Switchboard server: configuration,
// authentication, the WebSocket endpoint on nbio's event-driven engine,
// health checks and the demo page.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
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
	// keys are the reloadable token verification keys (see ReloadKeys);
	// nil without --jwt-public-key or --jwks-file.
	keys *keySet

	mu    sync.Mutex
	addr  net.Addr
	ready bool
}

// New builds a node from a validated configuration.
func New(cfg *config.Config, log *slog.Logger) (*Server, error) {
	auth, keys, err := newAuthenticator(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Broker != config.BrokerMemory {
		return nil, fmt.Errorf("--broker=%s is not available in this build yet; use --broker=memory", cfg.Broker)
	}
	hub, err := switchboard.New(switchboard.Options{
		Authenticate:   auth,
		AllowedOrigins: cfg.AllowedOrigins,
		PingInterval:   cfg.PingInterval,
		PongTimeout:    cfg.PongTimeout,
		NodeID:         cfg.NodeID,
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
	})
	if err != nil {
		return nil, fmt.Errorf("start hub: %w", err)
	}
	s := &Server{cfg: cfg, log: log, Hub: hub, mux: http.NewServeMux(), keys: keys}
	s.mux.Handle("GET /ws", hub.Handler())
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /", web.Handler())
	return s, nil
}

// Handler is everything the node serves over HTTP.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	ready := s.ready
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"not_ready"}` + "\n"))
		return
	}
	_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
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
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server using the port? try --addr=127.0.0.1:0)", s.cfg.Addr, err)
	}
	stop, err := s.serve(ln)
	if err != nil {
		_ = ln.Close()
		return err
	}
	s.mu.Lock()
	s.addr, s.ready = ln.Addr(), true
	s.mu.Unlock()
	s.log.Info("listening", "addr", ln.Addr().String(), "auth", s.cfg.Auth, "node_id", s.cfg.NodeID,
		"tls", s.cfg.TLSCert != "", "broker", s.cfg.Broker)
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
	herr := s.Hub.Shutdown(dctx)
	serr := stop(dctx)
	if errors.Is(herr, context.DeadlineExceeded) {
		s.log.Warn("shutdown timeout reached; remaining connections were cut")
		herr = nil
	}
	s.log.Info("stopped")
	return errors.Join(herr, serr)
}

// serve starts the HTTP side on ln: nbio's engine for plain TCP (no
// goroutine per idle connection), net/http for TLS.
func (s *Server) serve(ln net.Listener) (func(context.Context) error, error) {
	if s.cfg.TLSCert != "" {
		srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: s.cfg.HandshakeTimeout, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
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
		Handler: s.mux,
		MaxLoad: s.cfg.MaxConns + 1024, // the hub answers 503 itself; leave room for those answers
		// A connection must complete its HTTP request within this; after the
		// upgrade the hub clears the deadline and liveness takes over.
		KeepaliveTime:           s.cfg.HandshakeTimeout,
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
