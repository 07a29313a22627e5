package server

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard"
)

//go:embed openapi.json
var openAPISpec []byte

// Error codes of the backend API ({"error": code, "message": text}).
const (
	errBadRequest   = "bad_request"
	errUnauthorized = "unauthorized"
	errNotFound     = "not_found"
	errMethod       = "method_not_allowed"
	errTooLarge     = "too_large"
	errMediaType    = "unsupported_media_type"
	errInternal     = "internal"
	errUnavailable  = "broker_unavailable"
	errIdemReused   = "idempotency_key_reused"
	errNoHistory    = "history_not_kept"
)

// apiMaxBody is the largest request body the API reads.
const apiMaxBody = 1 << 20

// Route names: the only values of the route label in metrics.
const (
	routePublish    = "publish"
	routeDisconnect = "disconnect"
	routePresence   = "presence"
	routeUsers      = "users"
	routeStats      = "stats"
	routeHistory    = "history"
	routeOpenAPI    = "openapi"
	routeNotFound   = "not_found"
)

type apiRoute struct {
	name, method string
	public       bool // no API key needed
	handle       func(w http.ResponseWriter, r *http.Request, key int)
}

// api serves /api/*. It does its own routing so that every answer,
// 404 and 405 included, is a JSON error and carries a fixed route name.
type api struct {
	hub     *switchboard.Hub
	history historyReader // hub.History; tests make it fail
	log     *slog.Logger
	m       *metrics
	keys    [][sha256.Size]byte // SHA-256 of each API key
	routes  map[string]apiRoute // by path
	idem    *idemStore
	shared  *sharedIdem // cluster-wide Idempotency-Keys, if the broker keeps them (then idem is unused)
	refusal refusalLog
}

func newAPI(hub *switchboard.Hub, apiKeys []string, log *slog.Logger, m *metrics) *api {
	a := &api{hub: hub, history: hub.History, log: log, m: m, idem: newIdemStore()}
	for _, k := range apiKeys {
		a.keys = append(a.keys, sha256.Sum256([]byte(k)))
	}
	a.routes = map[string]apiRoute{
		"/api/publish":      {name: routePublish, method: http.MethodPost, handle: a.publish},
		"/api/disconnect":   {name: routeDisconnect, method: http.MethodPost, handle: a.disconnect},
		"/api/presence":     {name: routePresence, method: http.MethodGet, handle: a.presence},
		"/api/users":        {name: routeUsers, method: http.MethodGet, handle: a.users},
		"/api/stats":        {name: routeStats, method: http.MethodGet, handle: a.stats},
		"/api/history":      {name: routeHistory, method: http.MethodGet, handle: a.roomHistory},
		"/api/openapi.json": {name: routeOpenAPI, method: http.MethodGet, public: true, handle: a.openapi},
	}
	return a
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &statusWriter{ResponseWriter: w}
	rt, ok := a.routes[r.URL.Path]
	name := routeNotFound
	if ok {
		name = rt.name
	}
	defer func() { a.m.apiRequests.WithLabelValues(name, strconv.Itoa(rw.status())).Inc() }()
	switch {
	case !ok:
		writeError(rw, http.StatusNotFound, errNotFound, "no such API route: see GET /api/openapi.json")
		return
	case r.Method != rt.method:
		rw.Header().Set("Allow", rt.method)
		writeError(rw, http.StatusMethodNotAllowed, errMethod, r.URL.Path+" takes "+rt.method)
		return
	}
	key := -1
	if !rt.public {
		if key = a.authenticate(r); key < 0 {
			a.m.unauthorized.Inc()
			a.refusal.note(a.log, name)
			writeError(rw, http.StatusUnauthorized, errUnauthorized,
				"missing or wrong API key: send Authorization: Bearer <api key>")
			return
		}
	}
	rt.handle(rw, r, key)
}

// authenticate returns the index of the API key in the Authorization
// header, or -1.
func (a *api) authenticate(r *http.Request) int { return bearerKeyIndex(r, a.keys) }

// bearerKeyIndex returns the index of the Authorization header's bearer
// key among keys (SHA-256 digests), or -1. Every key is compared, in
// constant time and on fixed-length digests, whatever matches: timing
// tells nothing about which key matched or how much of it.
func bearerKeyIndex(r *http.Request, keys [][sha256.Size]byte) int {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return -1
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(scheme):])))
	found := -1
	for i := range keys {
		eq := subtle.ConstantTimeCompare(got[:], keys[i][:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	return found
}

// refusalLog logs refused API requests as counts, at most once per
// interval, and never with the offered key or any header.
type refusalLog struct {
	mu      sync.Mutex
	last    time.Time
	pending int
	total   int
}

func (l *refusalLog) note(log *slog.Logger, route string) {
	l.mu.Lock()
	l.pending++
	l.total++
	now := time.Now()
	if now.Sub(l.last) < 10*time.Second {
		l.mu.Unlock()
		return
	}
	n, total := l.pending, l.total
	l.pending, l.last = 0, now
	l.mu.Unlock()
	log.Warn("api requests refused: missing or wrong API key", "refused", n, "refused_total", total, "route", route)
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal","message":"response not encoded"}`)
	}
	writeRaw(w, status, append(b, '\n'))
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// apiOff answers /api/* when no API key is configured.
func apiOff(w http.ResponseWriter, _ *http.Request) {
	writeError(w, http.StatusNotFound, errNotFound,
		"the backend API is off: start the server with --api-key=<key> (or SWITCHBOARD_API_KEY) to enable it")
}

func (a *api) openapi(w http.ResponseWriter, _ *http.Request, _ int) {
	writeRaw(w, http.StatusOK, openAPISpec)
}
