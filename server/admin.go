package server

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/server/config"
	"github.com/switchboardhq/switchboard/web"
)

// admin serves the dashboard under /admin (--admin, off by default): the
// page and its assets (public: they hold nothing), a login that turns an
// admin key into a signed session cookie, a stream of one snapshot per
// second, the same snapshot as JSON, and user look-up and disconnect.
//
// Every route but the page, its assets and the login takes either the
// cookie or Authorization: Bearer <admin key> (for scripts). The key is
// never put in a URL, a cookie or a log.
type admin struct {
	hub     *switchboard.Hub
	log     *slog.Logger
	keys    [][sha256.Size]byte // SHA-256 of each admin key
	tickets *ticketSigner
	assets  http.Handler
	stats   *adminStats
	streams *streamSet
	refusal refusalLog
	// refused counts requests refused for a missing or wrong key or session.
	refused prometheus.Counter
	routes  map[string]adminRoute // by path
	stop    context.CancelFunc
	done    chan struct{}
}

type adminRoute struct {
	method string
	open   bool // no session needed
	handle http.HandlerFunc
}

// Paths and names of the dashboard.
const (
	adminPrefix     = "/admin"
	adminCookie     = "switchboard_admin"
	adminAssetsPfx  = "/admin/assets/"
	errAdminSession = "the dashboard needs a session: POST /admin/login with Authorization: Bearer <admin key>, " +
		"or send that header with this request"
)

// adminKeys are the keys that open the dashboard: --admin-key, or the API
// keys when none is given.
func adminKeys(cfg *config.Config) []string {
	if len(cfg.AdminKeys) > 0 {
		return cfg.AdminKeys
	}
	return cfg.APIKeys
}

// newAdmin builds the dashboard; attach gives it the hub once it exists
// (the hub needs the dashboard's OnNodeMessage first). share says whether
// the node publishes its per-second sample to the other nodes (not with
// the in-memory broker: there are none).
func newAdmin(cfg *config.Config, log *slog.Logger, m *metrics, share bool) *admin {
	keys := adminKeys(cfg)
	a := &admin{log: log, tickets: newTicketSigner(keys), assets: web.AdminHandler(), streams: newStreamSet(),
		done: make(chan struct{})}
	for _, k := range keys {
		a.keys = append(a.keys, sha256.Sum256([]byte(k)))
	}
	a.stats = newAdminStats(cfg.NodeID, share, log)
	a.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "switchboard_admin_unauthorized_total",
		Help:        "Admin dashboard requests refused for a missing or wrong admin key or session.",
		ConstLabels: prometheus.Labels{"node": cfg.NodeID},
	})
	m.reg.MustRegister(a.refused)
	a.routes = map[string]adminRoute{
		"/admin":                {http.MethodGet, true, a.page},
		"/admin/":               {http.MethodGet, true, a.page},
		"/admin/login":          {http.MethodPost, true, a.login},
		"/admin/logout":         {http.MethodPost, true, a.logout},
		"/admin/stream":         {http.MethodGet, false, a.stream},
		"/admin/api/snapshot":   {http.MethodGet, false, a.snapshot},
		"/admin/api/user":       {http.MethodGet, false, a.lookupUser},
		"/admin/api/disconnect": {http.MethodPost, false, a.disconnect},
	}
	return a
}

// attach starts sampling the hub once a second.
func (a *admin) attach(hub *switchboard.Hub) {
	a.hub = hub
	a.stats.hub = hub
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	go func() {
		defer close(a.done)
		a.stats.run(ctx, a.streams.publish)
	}()
}

// close ends the sampling and every open stream, and waits for them.
func (a *admin) close() {
	if a.stop == nil {
		return
	}
	a.stop()
	<-a.done
	a.streams.close()
}

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if strings.HasPrefix(path, adminAssetsPfx) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			a.methodNotAllowed(w, "GET")
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		http.StripPrefix(adminAssetsPfx[:len(adminAssetsPfx)-1], a.assets).ServeHTTP(w, r)
		return
	}
	rt, ok := a.routes[path]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, errNotFound, "no such admin route")
		return
	case r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead):
		a.methodNotAllowed(w, rt.method)
		return
	case !rt.open && !a.authorized(r):
		a.refuse(w, path)
		return
	}
	rt.handle(w, r)
}

func (a *admin) methodNotAllowed(w http.ResponseWriter, method string) {
	w.Header().Set("Allow", method)
	writeError(w, http.StatusMethodNotAllowed, errMethod, "this admin route takes "+method)
}

// refuse answers 401, counts it and logs it as a count (never the key).
func (a *admin) refuse(w http.ResponseWriter, route string) {
	a.refused.Inc()
	a.refusal.note(a.log, route)
	writeError(w, http.StatusUnauthorized, errUnauthorized, errAdminSession)
}

// keyIndex returns the index of the admin key in the Authorization
// header, or -1, comparing every key in constant time (as the API does).
func (a *admin) keyIndex(r *http.Request) int { return bearerKeyIndex(r, a.keys) }

// authorized accepts an admin key in the Authorization header, or a
// session cookie that a node of this cluster signed and that has not
// expired.
func (a *admin) authorized(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return a.keyIndex(r) >= 0
	}
	c, err := r.Cookie(adminCookie)
	return err == nil && a.tickets.verify(c.Value, time.Now())
}

// page serves the dashboard, which asks for the key itself.
func (a *admin) page(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Scripts and styles only from this server; no frames, no inline code.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(web.AdminPage())
}

// login turns a valid admin key (Authorization: Bearer) into a session
// cookie: HttpOnly (the page's scripts never hold it), SameSite=Strict (no
// other site's request carries it), limited to /admin, Secure over TLS.
// The key is not in the cookie: the ticket is signed with a key derived
// from it, so every node holding the same keys accepts it.
func (a *admin) login(w http.ResponseWriter, r *http.Request) {
	i := a.keyIndex(r)
	if i < 0 {
		a.refuse(w, "/admin/login")
		return
	}
	exp := time.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: adminCookie, Value: a.tickets.issue(i, exp), Path: adminPrefix, Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureRequest(r),
	})
	writeJSON(w, http.StatusOK, map[string]any{"node": a.stats.node, "expires": exp.UTC().Format(time.RFC3339)})
}

// logout removes the cookie from the browser. A copied ticket stays valid
// until it expires (sessionTTL): replacing the admin keys revokes them all.
func (a *admin) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: "", Path: adminPrefix, MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secureRequest(r)})
	writeJSON(w, http.StatusOK, map[string]bool{"logged_out": true})
}

// secureRequest says whether the browser reached us over TLS, directly or
// through a proxy that says so (a false claim only makes the cookie
// stricter).
func secureRequest(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// snapshot answers the latest per-second snapshot as JSON.
func (a *admin) snapshot(w http.ResponseWriter, _ *http.Request) {
	writeRaw(w, http.StatusOK, append(a.stats.latest(), '\n'))
}

// adminOff answers /admin when the dashboard is off.
func adminOff(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusNotFound, errNotFound,
		"the admin dashboard is off: start the server with --admin (and --admin-key or --api-key) to enable it")
}

// closeAdmin ends the dashboard's sampling and streams, if it is on.
func (s *Server) closeAdmin() {
	if s.admin != nil {
		s.admin.close()
	}
}

// isAdminPath says whether the dashboard (or its refusal) answers path.
func isAdminPath(path string) bool {
	return path == adminPrefix || strings.HasPrefix(path, adminPrefix+"/")
}
