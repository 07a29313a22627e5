package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// loginCookie logs in with key and returns the session cookie.
func loginCookie(t *testing.T, h http.Handler, key string) *http.Cookie {
	t.Helper()
	rec := call(t, h, "POST", "/admin/login", key, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == adminCookie {
			return c
		}
	}
	t.Fatalf("login set no %s cookie: %v", adminCookie, rec.Header())
	return nil
}

// withCookie sends one request carrying cookie c.
func withCookie(h http.Handler, method, path string, c *http.Cookie, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c != nil {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// Without --admin nothing of the dashboard is served: every /admin path
// answers a JSON 404 that says how to turn it on.
func TestAdminOffByDefault(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k")
	h := srv.Handler()
	for _, path := range []string{"/admin", "/admin/", "/admin/stream", "/admin/api/snapshot", "/admin/assets/admin.js",
		"/admin/assets/vendor/uplot/uPlot.iife.min.js"} {
		m := wantError(t, call(t, h, "GET", path, "k", ""), http.StatusNotFound, errNotFound)
		if !strings.Contains(m["message"].(string), "--admin") {
			t.Errorf("%s: %v", path, m)
		}
	}
	wantError(t, call(t, h, "POST", "/admin/login", "k", ""), http.StatusNotFound, errNotFound)
	// The demo page is unchanged, and "/administrator" is not the dashboard.
	if rec := call(t, h, "GET", "/", "", ""); rec.Code != http.StatusOK {
		t.Errorf("demo page: %d", rec.Code)
	}
	if rec := call(t, h, "GET", "/administrator", "", ""); rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "--admin") {
		t.Errorf("/administrator: %d %s", rec.Code, rec.Body)
	}
}

// The page and its assets (uPlot included) are served from the binary
// without a key; everything else needs the admin key or a session.
func TestAdminPageAndAssets(t *testing.T) {
	srv, _ := testServer(t, "--admin", "--admin-key=adm")
	h := srv.Handler()
	for _, path := range []string{"/admin", "/admin/"} {
		rec := call(t, h, "GET", path, "", "")
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "/admin/assets/vendor/uplot/uPlot.iife.min.js") {
			t.Fatalf("%s: %d %.200s", path, rec.Code, rec.Body)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	for path, want := range map[string]string{
		"/admin/assets/admin.js":                       "EventSource",
		"/admin/assets/admin.css":                      ".tiles",
		"/admin/assets/vendor/uplot/uPlot.iife.min.js": "uPlot (v1.6.32)",
		"/admin/assets/vendor/uplot/uPlot.min.css":     ".uplot",
		"/admin/assets/vendor/uplot/LICENSE":           "MIT License",
	} {
		rec := call(t, h, "GET", path, "", "")
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d, want a body with %q", path, rec.Code, want)
		}
	}
	wantError(t, call(t, h, "GET", "/admin/nope", "adm", ""), http.StatusNotFound, errNotFound)
	rec := call(t, h, "POST", "/admin/api/snapshot", "adm", "")
	wantError(t, rec, http.StatusMethodNotAllowed, errMethod)
	if rec.Header().Get("Allow") != "GET" {
		t.Errorf("Allow %q", rec.Header().Get("Allow"))
	}
	wantError(t, call(t, h, "GET", "/admin/login", "adm", ""), http.StatusMethodNotAllowed, errMethod)
}

// A wrong or missing key is a counted JSON 401 whose log line holds no
// key; the admin key (not the API key, once one is set) opens the
// dashboard, by header or by the cookie the login sets.
func TestAdminAuth(t *testing.T) {
	srv, logs := testServer(t, "--admin", "--admin-key=adm-secret-1", "--admin-key=adm-secret-2", "--api-key=api-secret")
	h := srv.Handler()
	refused := 0
	for _, key := range []string{"", "api-secret", "wrong-admin-key", "adm-secret-1x"} {
		for _, path := range []string{"/admin/api/snapshot", "/admin/stream", "/admin/api/user?id=u"} {
			wantError(t, call(t, h, "GET", path, key, ""), http.StatusUnauthorized, errUnauthorized)
			refused++
		}
		if key != "" {
			wantError(t, call(t, h, "POST", "/admin/login", key, ""), http.StatusUnauthorized, errUnauthorized)
			refused++
		}
	}
	wantError(t, call(t, h, "POST", "/admin/api/disconnect", "", `{"user":"u"}`), http.StatusUnauthorized, errUnauthorized)
	refused++
	if got := testutilCounter(t, srv, "switchboard_admin_unauthorized_total"); got != float64(refused) {
		t.Errorf("switchboard_admin_unauthorized_total = %v, want %d", got, refused)
	}
	for _, secret := range []string{"wrong-admin-key", "api-secret", "adm-secret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs hold %q: %s", secret, logs)
		}
	}
	if !strings.Contains(logs.String(), "refused") {
		t.Errorf("refusals not logged as counts: %s", logs)
	}

	for _, key := range []string{"adm-secret-1", "adm-secret-2"} {
		if rec := call(t, h, "GET", "/admin/api/snapshot", key, ""); rec.Code != 200 {
			t.Errorf("snapshot with %s: %d %s", key, rec.Code, rec.Body)
		}
	}
	c := loginCookie(t, h, "adm-secret-2")
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/admin" || c.Secure {
		t.Errorf("cookie attributes: %+v", c)
	}
	if strings.Contains(c.Value, "adm-secret") {
		t.Errorf("the cookie holds the key: %q", c.Value)
	}
	if rec := withCookie(h, "GET", "/admin/api/snapshot", c, ""); rec.Code != 200 {
		t.Errorf("snapshot with the cookie: %d %s", rec.Code, rec.Body)
	}
	// A wrong Authorization header is not rescued by a good cookie.
	req := httptest.NewRequest("GET", "/admin/api/snapshot", nil)
	req.AddCookie(c)
	req.Header.Set("Authorization", "Bearer wrong")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	wantError(t, rec, http.StatusUnauthorized, errUnauthorized)

	tampered := *c
	tampered.Value = c.Value[:len(c.Value)-2] + "AA"
	wantError(t, withCookie(h, "GET", "/admin/api/snapshot", &tampered, ""), http.StatusUnauthorized, errUnauthorized)
	garbage := *c
	garbage.Value = "not-a-ticket"
	wantError(t, withCookie(h, "GET", "/admin/api/snapshot", &garbage, ""), http.StatusUnauthorized, errUnauthorized)

	// Behind TLS (here, a proxy saying so) the cookie is Secure too.
	rec = call(t, h, "POST", "/admin/login", "adm-secret-1", "", "X-Forwarded-Proto", "https")
	if cs := rec.Result().Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("login over https: cookies %v", cs)
	}
	out := withCookie(h, "POST", "/admin/logout", c, "")
	if cs := out.Result().Cookies(); out.Code != 200 || len(cs) != 1 || cs[0].MaxAge >= 0 || cs[0].Value != "" {
		t.Errorf("logout: %d cookies %v", out.Code, cs)
	}
}

// With no --admin-key the API keys open the dashboard.
func TestAdminOpensWithTheAPIKey(t *testing.T) {
	srv, _ := testServer(t, "--admin", "--api-key=api-one", "--api-key=api-two")
	h := srv.Handler()
	if rec := call(t, h, "GET", "/admin/api/snapshot", "api-two", ""); rec.Code != 200 {
		t.Errorf("snapshot with an API key: %d %s", rec.Code, rec.Body)
	}
	loginCookie(t, h, "api-one")
	wantError(t, call(t, h, "GET", "/admin/api/snapshot", "api-three", ""), http.StatusUnauthorized, errUnauthorized)
}

// Any node with the same admin keys accepts a session another node
// signed (the dashboard sits behind a load balancer); a node with other
// keys does not.
func TestAdminSessionWorksOnEveryNode(t *testing.T) {
	a, _ := testServer(t, "--admin", "--admin-key=shared")
	b, _ := testServer(t, "--admin", "--admin-key=other", "--admin-key=shared")
	other, _ := testServer(t, "--admin", "--admin-key=other")
	c := loginCookie(t, a.Handler(), "shared")
	if rec := withCookie(b.Handler(), "GET", "/admin/api/snapshot", c, ""); rec.Code != 200 {
		t.Errorf("node b refused node a's session: %d", rec.Code)
	}
	wantError(t, withCookie(other.Handler(), "GET", "/admin/api/snapshot", c, ""), http.StatusUnauthorized, errUnauthorized)
}

func TestTicketExpiry(t *testing.T) {
	ts := newTicketSigner([]string{"k1", "k2"})
	now := time.Unix(1_800_000_000, 0)
	good := ts.issue(1, now.Add(time.Hour))
	if !ts.verify(good, now) {
		t.Fatal("a fresh ticket was refused")
	}
	if ts.verify(good, now.Add(time.Hour)) || ts.verify(good, now.Add(2*time.Hour)) {
		t.Error("an expired ticket was accepted")
	}
	if far := ts.issue(0, now.Add(sessionTTL+time.Hour)); ts.verify(far, now) {
		t.Error("a ticket expiring past the session lifetime was accepted")
	}
	if one, two := ts.issue(0, now.Add(time.Hour)), ts.issue(0, now.Add(time.Hour)); one == two {
		t.Error("two tickets are equal: no random part")
	}
	if newTicketSigner([]string{"k3"}).verify(good, now) {
		t.Error("a ticket of another key was accepted")
	}
	for _, bad := range []string{"", ".", good + ".x", strings.Repeat("A", 200), strings.Replace(good, ".", "", 1)} {
		if ts.verify(bad, now) {
			t.Errorf("accepted %q", bad)
		}
	}
}
