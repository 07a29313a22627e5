package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
)

type oaSchema struct {
	Ref        string               `json:"$ref"`
	Required   []string             `json:"required"`
	Properties map[string]*oaSchema `json:"properties"`
	Items      *oaSchema            `json:"items"`
}

type oaSpec struct {
	OpenAPI string                                 `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage  `json:"paths"`
	Comps   struct{ Schemas map[string]*oaSchema } `json:"components"`
}

type oaOperation struct {
	Responses map[string]struct {
		Content map[string]struct {
			Schema *oaSchema `json:"schema"`
		} `json:"content"`
	} `json:"responses"`
}

// scenario produces a request that the documented status answers.
type scenario struct {
	method, target, key, ctype, body string
	hdr                              []string
	closed                           bool // send to a node whose hub is closed (5xx)
	storeDown                        bool // send to a node whose history store fails
	brokerDown                       bool // send to a node whose broker is unreachable
	inFlight                         bool // send to a node whose shared Idempotency-Key "spec" is pending
	before                           func(h http.Handler)
}

func TestOpenAPIMatchesHandlers(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--history-rooms=kept")
	closed, _ := testServer(t, "--api-key=k")
	_ = closed.Hub.Close()
	storeDown, _ := testServer(t, "--api-key=k", "--history-rooms=kept")
	storeDown.api.(*api).history = failingHistory
	// Nothing listens on port 1: the node starts (after its 5 s wait) and
	// serves with its broker down.
	brokerDown, _ := testServer(t, "--api-key=k", "--broker=redis", "--redis-url=redis://127.0.0.1:1/0")
	inFlight, inFlightAPI, inFlightStore := withFakeStore(t)
	h := srv.Handler()

	rec := call(t, h, "GET", "/api/openapi.json", "", "") // no key needed
	if rec.Code != 200 {
		t.Fatalf("openapi.json: %d", rec.Code)
	}
	var spec oaSpec
	if err := json.Unmarshal(rec.Body.Bytes(), &spec); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.0.") {
		t.Errorf("openapi version %q", spec.OpenAPI)
	}

	pub := `{"room":"r","data":{"x":1}}`
	big := `{"room":"r","data":"` + strings.Repeat("x", apiMaxBody) + `"}`
	post := func(target, body string) scenario {
		return scenario{method: "POST", target: target, key: "k", ctype: "application/json", body: body}
	}
	with := func(s scenario, f func(*scenario)) scenario { f(&s); return s }
	// A kept message first, so that the message frames are checked too.
	history := scenario{method: "GET", target: "/api/history?room=kept&since=0&limit=10", key: "k",
		before: func(h http.Handler) { call(t, h, "POST", "/api/publish", "k", `{"room":"kept","data":{"x":1}}`) }}
	scenarios := map[string]scenario{
		"POST /api/publish 200": post("/api/publish", pub),
		"POST /api/publish 400": post("/api/publish", `{"data":1}`),
		"POST /api/publish 401": with(post("/api/publish", pub), func(s *scenario) { s.key = "nope" }),
		"POST /api/publish 413": post("/api/publish", big),
		"POST /api/publish 415": with(post("/api/publish", pub), func(s *scenario) { s.ctype = "text/plain" }),
		"POST /api/publish 422": with(post("/api/publish", `{"room":"r","data":2}`), func(s *scenario) {
			s.hdr = []string{"Idempotency-Key", "spec"}
			s.before = func(h http.Handler) {
				call(t, h, "POST", "/api/publish", "k", pub, "Idempotency-Key", "spec")
			}
		}),
		"POST /api/publish 409": with(post("/api/publish", pub), func(s *scenario) {
			s.hdr, s.inFlight = []string{"Idempotency-Key", "spec"}, true
			inFlightStore.values[inFlightAPI.sharedKey(0, routePublish, "spec")] = pendingEntry(pub)
		}),
		"POST /api/publish 500":     with(post("/api/publish", pub), func(s *scenario) { s.closed = true }),
		"POST /api/publish 503":     with(post("/api/publish", pub), func(s *scenario) { s.brokerDown = true }),
		"POST /api/disconnect 503":  with(post("/api/disconnect", `{"user":"u"}`), func(s *scenario) { s.brokerDown = true }),
		"POST /api/disconnect 200":  post("/api/disconnect", `{"user":"u"}`),
		"POST /api/disconnect 400":  post("/api/disconnect", `{"user":""}`),
		"POST /api/disconnect 401":  with(post("/api/disconnect", `{"user":"u"}`), func(s *scenario) { s.key = "" }),
		"POST /api/disconnect 413":  post("/api/disconnect", big),
		"POST /api/disconnect 415":  with(post("/api/disconnect", `{"user":"u"}`), func(s *scenario) { s.ctype = "" }),
		"POST /api/disconnect 500":  with(post("/api/disconnect", `{"user":"u"}`), func(s *scenario) { s.closed = true }),
		"GET /api/presence 200":     {method: "GET", target: "/api/presence?room=r", key: "k"},
		"GET /api/presence 400":     {method: "GET", target: "/api/presence", key: "k"},
		"GET /api/presence 401":     {method: "GET", target: "/api/presence?room=r"},
		"GET /api/history 200":      history,
		"GET /api/history 400":      {method: "GET", target: "/api/history?room=kept&limit=0", key: "k"},
		"GET /api/history 401":      {method: "GET", target: "/api/history?room=kept", key: "nope"},
		"GET /api/history 404":      {method: "GET", target: "/api/history?room=r", key: "k"},
		"GET /api/history 500":      {method: "GET", target: "/api/history?room=kept", key: "k", storeDown: true},
		"GET /api/users 200":        {method: "GET", target: "/api/users", key: "k"},
		"GET /api/users 401":        {method: "GET", target: "/api/users", key: "x"},
		"GET /api/stats 200":        {method: "GET", target: "/api/stats", key: "k"},
		"GET /api/stats 401":        {method: "GET", target: "/api/stats"},
		"GET /api/openapi.json 200": {method: "GET", target: "/api/openapi.json"},
	}

	used := map[string]bool{}
	var paths []string
	for p := range spec.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		for method, raw := range spec.Paths[path] {
			var op oaOperation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			for status, resp := range op.Responses {
				name := strings.ToUpper(method) + " " + path + " " + status
				sc, ok := scenarios[name]
				if !ok {
					t.Errorf("%s is documented but the test has no scenario for it", name)
					continue
				}
				used[name] = true
				target := h
				switch {
				case sc.closed:
					target = closed.Handler()
				case sc.storeDown:
					target = storeDown.Handler()
				case sc.brokerDown:
					target = brokerDown.Handler()
				case sc.inFlight:
					target = inFlight.Handler()
				}
				if sc.before != nil {
					sc.before(target)
				}
				req := httptest.NewRequestWithContext(context.Background(), sc.method, sc.target, strings.NewReader(sc.body))
				if sc.ctype != "" {
					req.Header.Set("Content-Type", sc.ctype)
				}
				if sc.key != "" {
					req.Header.Set("Authorization", "Bearer "+sc.key)
				}
				for i := 0; i+1 < len(sc.hdr); i += 2 {
					req.Header.Set(sc.hdr[i], sc.hdr[i+1])
				}
				rec := httptest.NewRecorder()
				target.ServeHTTP(rec, req)
				if strconv.Itoa(rec.Code) != status {
					t.Errorf("%s: got %d %s", name, rec.Code, rec.Body)
					continue
				}
				media, ok := resp.Content["application/json"]
				if !ok || media.Schema == nil {
					t.Errorf("%s: no application/json schema documented", name)
					continue
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s: Content-Type %q", name, ct)
				}
				var body any
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Errorf("%s: body is not JSON: %v", name, err)
					continue
				}
				checkRequired(t, name, &spec, media.Schema, body)
			}
		}
	}
	for name := range scenarios {
		if !used[name] {
			t.Errorf("scenario %s answers a status the spec does not document", name)
		}
	}
}

// checkRequired checks that body has every required field of s, recursing
// into documented object properties and array items.
func checkRequired(t *testing.T, where string, spec *oaSpec, s *oaSchema, body any) {
	t.Helper()
	for s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		next, ok := spec.Comps.Schemas[name]
		if !ok {
			t.Fatalf("%s: dangling $ref %s", where, s.Ref)
		}
		s = next
	}
	switch v := body.(type) {
	case map[string]any:
		for _, f := range s.Required {
			if _, ok := v[f]; !ok {
				t.Errorf("%s: body lacks required field %q: %v", where, f, v)
			}
		}
		for k, sub := range s.Properties {
			if fv, ok := v[k]; ok && sub != nil {
				checkRequired(t, where+"."+k, spec, sub, fv)
			}
		}
	case []any:
		if s.Items != nil {
			for _, item := range v {
				checkRequired(t, where+"[]", spec, s.Items, item)
			}
		}
	}
}
