package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestAPIOffWithoutKeys(t *testing.T) {
	srv, _ := testServer(t)
	for _, p := range []string{"/api/publish", "/api/stats", "/api/openapi.json", "/api/nothing"} {
		rec := call(t, srv.Handler(), http.MethodGet, p, "k", "")
		m := wantError(t, rec, http.StatusNotFound, errNotFound)
		if msg := m["message"].(string); !strings.Contains(msg, "--api-key") || !strings.Contains(msg, "off") {
			t.Errorf("%s: message %q should say the API is off and how to enable it", p, msg)
		}
	}
}

func TestAPIAuth(t *testing.T) {
	srv, logs := testServer(t, "--api-key=first-key", "--api-key=second-key")
	h := srv.Handler()
	for _, key := range []string{"first-key", "second-key"} {
		if rec := call(t, h, http.MethodGet, "/api/stats", key, ""); rec.Code != http.StatusOK {
			t.Errorf("key %s: %d %s", key, rec.Code, rec.Body)
		}
	}
	bad := []func(*http.Request){
		func(*http.Request) {},
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong-key") },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer first-ke") },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer first-keyy") },
		func(r *http.Request) { r.Header.Set("Authorization", "Basic first-key") },
		func(r *http.Request) { r.Header.Set("Authorization", "first-key") },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") },
	}
	for i, mod := range bad {
		req := httptest.NewRequest(http.MethodGet, "/api/users", nil)
		mod(req)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("case %d: %d, want 401", i, rec.Code)
			continue
		}
		wantError(t, rec, http.StatusUnauthorized, errUnauthorized)
	}
	// The scheme is case-insensitive (RFC 7235).
	req := httptest.NewRequest(http.MethodGet, "/api/users", nil)
	req.Header.Set("Authorization", "bearer second-key")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("lower-case bearer: %d", rec.Code)
	}
	if got := testutilCounter(t, srv, "switchboard_api_unauthorized_total"); got != float64(len(bad)) {
		t.Errorf("switchboard_api_unauthorized_total = %v, want %d", got, len(bad))
	}
	out := logs.String()
	if !strings.Contains(out, "api requests refused") {
		t.Errorf("no refusal log line: %s", out)
	}
	for _, s := range []string{"wrong-key", "first-ke", "second-key", "Bearer"} {
		if strings.Contains(out, s) {
			t.Errorf("log contains %q: %s", s, out)
		}
	}
}

func TestAPIRequestErrors(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k")
	h := srv.Handler()
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code, inMessage                 string
	}{
		{"unknown route", "GET", "/api/nope", "", "", 404, errNotFound, ""},
		{"wrong method", "GET", "/api/publish", "", "", 405, errMethod, "POST"},
		{"wrong method on GET route", "POST", "/api/stats", "application/json", "{}", 405, errMethod, "GET"},
		{"no content type", "POST", "/api/publish", "", `{"room":"r","data":1}`, 415, errMediaType, "application/json"},
		{"text content type", "POST", "/api/publish", "text/plain", `{"room":"r","data":1}`, 415, errMediaType, ""},
		{"charset is fine", "POST", "/api/publish", "application/json; charset=utf-8", `{"room":"r","data":1}`, 200, "", ""},
		{"too large", "POST", "/api/publish", "application/json", `{"room":"r","data":"` + strings.Repeat("x", 1<<20) + `"}`, 413, errTooLarge, ""},
		{"empty body", "POST", "/api/publish", "application/json", "", 400, errBadRequest, "empty"},
		{"not json", "POST", "/api/publish", "application/json", `{room}`, 400, errBadRequest, "syntax"},
		{"not an object", "POST", "/api/publish", "application/json", `[1]`, 400, errBadRequest, "object"},
		{"unknown field", "POST", "/api/publish", "application/json", `{"room":"r","data":1,"rom":2}`, 400, errBadRequest, `"rom"`},
		{"case-folded field", "POST", "/api/publish", "application/json", `{"ROOM":"r","data":1}`, 400, errBadRequest, `"ROOM"`},
		{"duplicate field", "POST", "/api/publish", "application/json", `{"room":"r","room":"s","data":1}`, 400, errBadRequest, "twice"},
		{"trailing data", "POST", "/api/publish", "application/json", `{"room":"r","data":1} {}`, 400, errBadRequest, "after"},
		{"trailing garbage", "POST", "/api/publish", "application/json", `{"room":"r","data":1}x`, 400, errBadRequest, "after"},
		{"wrong type", "POST", "/api/publish", "application/json", `{"room":5,"data":1}`, 400, errBadRequest, `"room"`},
		{"no target", "POST", "/api/publish", "application/json", `{"data":1}`, 400, errBadRequest, "exactly one target"},
		{"two targets", "POST", "/api/publish", "application/json", `{"room":"r","user":"u","data":1}`, 400, errBadRequest, "exactly one target"},
		{"broadcast false", "POST", "/api/publish", "application/json", `{"broadcast":false,"data":1}`, 400, errBadRequest, "true"},
		{"no data", "POST", "/api/publish", "application/json", `{"room":"r"}`, 400, errBadRequest, `"data"`},
		{"bad room", "POST", "/api/publish", "application/json", `{"room":"a b","data":1}`, 400, errBadRequest, "room"},
		{"empty room", "POST", "/api/publish", "application/json", `{"room":"","data":1}`, 400, errBadRequest, "room"},
		{"long room", "POST", "/api/publish", "application/json", `{"room":"` + strings.Repeat("r", 129) + `","data":1}`, 400, errBadRequest, "128"},
		{"empty user", "POST", "/api/publish", "application/json", `{"user":"","data":1}`, 400, errBadRequest, "user"},
		{"control user", "POST", "/api/publish", "application/json", `{"user":"a\nb","data":1}`, 400, errBadRequest, "user"},
		{"null data is data", "POST", "/api/publish", "application/json", `{"broadcast":true,"data":null}`, 200, "", ""},
		{"disconnect without user", "POST", "/api/disconnect", "application/json", `{}`, 400, errBadRequest, `"user"`},
		{"disconnect unknown field", "POST", "/api/disconnect", "application/json", `{"user":"a","all":true}`, 400, errBadRequest, `"all"`},
		{"presence without room", "GET", "/api/presence", "", "", 400, errBadRequest, "room"},
		{"presence bad room", "GET", "/api/presence?room=a%20b", "", "", 400, errBadRequest, "room"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer k")
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tt.code == "" {
				if rec.Code != tt.status {
					t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tt.status)
				}
				return
			}
			m := wantError(t, rec, tt.status, tt.code)
			if msg := m["message"].(string); !strings.Contains(msg, tt.inMessage) {
				t.Errorf("message %q does not mention %q", msg, tt.inMessage)
			}
			if tt.status == 405 && rec.Header().Get("Allow") == "" {
				t.Error("405 without Allow header")
			}
		})
	}
}

func TestAPIPublishDisconnectPresence(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--read-only-rooms=news")
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := srv.Handler()

	alice := dialWS(t, ctx, hs.URL, "alice")
	alice.join(ctx, "news")
	bob := dialWS(t, ctx, hs.URL, "bob")

	rec := call(t, h, "POST", "/api/publish", "k", `{"room":"news","data":{"n":12345678901234567890}}`)
	if rec.Code != 200 {
		t.Fatalf("publish: %d %s", rec.Code, rec.Body)
	}
	id := decode(t, rec)["id"].(string)
	msg := alice.next(ctx, "message")
	if msg["id"] != id || msg["from"] != "server" || msg["room"] != "news" {
		t.Errorf("alice got %v, want id %s from server", msg, id)
	}
	if _, has := decode(t, rec)["offset"]; has {
		t.Error("publish answered an offset, but the room keeps no history")
	}

	rec = call(t, h, "POST", "/api/publish", "k", `{"user":"bob","data":"hi"}`)
	if m := bob.next(ctx, "message"); rec.Code != 200 || m["to"] != "bob" || m["data"] != "hi" {
		t.Errorf("send to bob: %d, frame %v", rec.Code, m)
	}
	rec = call(t, h, "POST", "/api/publish", "k", `{"broadcast":true,"data":[1]}`)
	if m := bob.next(ctx, "message"); rec.Code != 200 || m["broadcast"] != true {
		t.Errorf("broadcast: %d, frame %v", rec.Code, m)
	}
	alice.next(ctx, "message")

	if m := decode(t, call(t, h, "GET", "/api/presence?room=news", "k", "")); !reflect.DeepEqual(m,
		map[string]any{"room": "news", "users": []any{"alice"}}) {
		t.Errorf("presence: %v", m)
	}
	if m := decode(t, call(t, h, "GET", "/api/presence?room=empty", "k", "")); !reflect.DeepEqual(m["users"], []any{}) {
		t.Errorf("presence of an empty room: %v", m)
	}
	if m := decode(t, call(t, h, "GET", "/api/users", "k", "")); !reflect.DeepEqual(m["users"], []any{"alice", "bob"}) {
		t.Errorf("users: %v", m)
	}
	want := map[string]any{"connections": 2.0, "users": 2.0, "rooms": 1.0,
		"nodes": []any{map[string]any{"id": "test-node", "connections": 2.0, "users": 2.0, "rooms": 1.0}}}
	if m := decode(t, call(t, h, "GET", "/api/stats", "k", "")); !reflect.DeepEqual(m, want) {
		t.Errorf("stats: %v, want %v", m, want)
	}

	rec = call(t, h, "POST", "/api/disconnect", "k", `{"user":"alice"}`)
	if m := decode(t, rec); rec.Code != 200 || m["user"] != "alice" {
		t.Fatalf("disconnect: %d %s", rec.Code, rec.Body)
	}
	for {
		if _, _, err := alice.c.Read(ctx); err != nil {
			if websocket.CloseStatus(err) != 4003 {
				t.Fatalf("alice closed with %v, want 4003", err)
			}
			break
		}
	}
}
