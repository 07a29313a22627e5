package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

// failingHistory stands for a history store that cannot be read; its error
// quotes bytes of a kept payload, as strconv does for a malformed one.
func failingHistory(context.Context, string, uint64, int) (switchboard.RoomHistory, error) {
	bad := &strconv.NumError{Func: "ParseUint", Num: "secret-payload-bytes", Err: strconv.ErrSyntax}
	return switchboard.RoomHistory{}, fmt.Errorf("history of kept: history payload without a valid trailer: %v", bad)
}

// historyAnswer is a decoded 200 of GET /api/history.
type historyAnswer struct {
	Room     string           `json:"room"`
	Offset   *uint64          `json:"offset"`
	Epoch    *string          `json:"epoch"`
	Complete *bool            `json:"complete"`
	Messages []map[string]any `json:"messages"`
}

func getHistory(t *testing.T, h http.Handler, query string) historyAnswer {
	t.Helper()
	rec := call(t, h, "GET", "/api/history?"+query, "k", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("history?%s: %d %s", query, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var a historyAnswer
	dec := json.NewDecoder(strings.NewReader(rec.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("history?%s: %v in %s", query, err, rec.Body)
	}
	if a.Offset == nil || a.Epoch == nil || a.Complete == nil || a.Messages == nil {
		t.Fatalf("history?%s lacks a field: %s", query, rec.Body)
	}
	return a
}

// offsets lists the offsets of the messages, checking each is a message
// frame of room from the server.
func offsets(t *testing.T, room string, msgs []map[string]any) []uint64 {
	t.Helper()
	out := []uint64{}
	for _, m := range msgs {
		if m["type"] != "message" || m["room"] != room || m["from"] != "server" {
			t.Errorf("not a message frame of %s from the server: %v", room, m)
		}
		for _, f := range []string{"id", "data", "ts"} {
			if _, ok := m[f]; !ok {
				t.Errorf("message without %s: %v", f, m)
			}
		}
		o, _ := m["offset"].(float64)
		out = append(out, uint64(o))
	}
	return out
}

func publishKept(t *testing.T, h http.Handler, body string) (id string, offset uint64, epoch string) {
	t.Helper()
	rec := call(t, h, "POST", "/api/publish", "k", body)
	if rec.Code != http.StatusOK {
		t.Fatalf("publish %s: %d %s", body, rec.Code, rec.Body)
	}
	var p struct {
		ID     string  `json:"id"`
		Offset *uint64 `json:"offset"`
		Epoch  string  `json:"epoch"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Offset == nil {
		t.Fatalf("publish %s answered no offset: %s", body, rec.Body)
	}
	return p.ID, *p.Offset, p.Epoch
}

func TestAPIHistory(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--history-rooms=chat:*,news")
	h := srv.Handler()

	var ids []string
	var epoch string
	for i := 1; i <= 3; i++ {
		id, off, ep := publishKept(t, h, fmt.Sprintf(`{"room":"chat:1","data":{"n":%d,"big":12345678901234567890}}`, i))
		if off != uint64(i) {
			t.Errorf("publish %d: offset %d", i, off)
		}
		if len(ep) != 16 || (epoch != "" && ep != epoch) {
			t.Errorf("publish %d: epoch %q (first %q), want the same 16 characters", i, ep, epoch)
		}
		epoch = ep
		ids = append(ids, id)
	}
	// Other rooms, and users (no --history-users), answer no offset.
	for _, body := range []string{`{"room":"lobby","data":1}`, `{"user":"alice","data":1}`, `{"broadcast":true,"data":1}`} {
		m := decode(t, call(t, h, "POST", "/api/publish", "k", body))
		if _, has := m["offset"]; has {
			t.Errorf("publish %s answered %v", body, m)
		}
		if _, has := m["epoch"]; has {
			t.Errorf("publish %s answered %v", body, m)
		}
	}

	a := getHistory(t, h, "room=chat:1")
	if a.Room != "chat:1" || *a.Offset != 3 || *a.Epoch != epoch || !*a.Complete {
		t.Errorf("history: %+v, want offset 3 epoch %s complete", a, epoch)
	}
	if got := offsets(t, "chat:1", a.Messages); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Errorf("offsets %v", got)
	}
	for i, m := range a.Messages {
		if m["id"] != ids[i] {
			t.Errorf("message %d: id %v, want %s", i, m["id"], ids[i])
		}
	}
	// Data comes back byte for byte: large integers keep their digits.
	if rec := call(t, h, "GET", "/api/history?room=chat:1", "k", ""); !strings.Contains(rec.Body.String(), `"data":{"n":2,"big":12345678901234567890}`) {
		t.Errorf("data not kept verbatim: %s", rec.Body)
	}

	for _, tt := range []struct {
		query    string
		offsets  []uint64
		complete bool
	}{
		{"room=chat:1&since=0", []uint64{1, 2, 3}, true},
		{"room=chat:1&since=1", []uint64{2, 3}, true},
		{"room=chat:1&since=2&limit=1", []uint64{3}, true},
		{"room=chat:1&since=3", []uint64{}, true},
		{"room=chat:1&limit=2", []uint64{1, 2}, false},
		{"room=chat:1&since=2&limit=2", []uint64{3}, true},
		{"room=chat:1&since=0&limit=1", []uint64{1}, false},
		{"room=chat:1&limit=1000", []uint64{1, 2, 3}, true},
		{"room=chat:1&limit=5000", []uint64{1, 2, 3}, true},                    // capped
		{"room=chat:1&limit=99999999999999999999999", []uint64{1, 2, 3}, true}, // capped too
		{"room=chat:1&since=007", []uint64{}, false},                           // ahead of the room
		{"room=chat:1&since=18446744073709551615", []uint64{}, false},
		{"room=chat:2", []uint64{}, true}, // a kept room without messages
		{"room=news&since=0&limit=10", []uint64{}, true},
	} {
		a := getHistory(t, h, tt.query)
		room := strings.TrimPrefix(strings.Split(tt.query, "&")[0], "room=")
		if got := offsets(t, room, a.Messages); !reflect.DeepEqual(got, tt.offsets) || *a.Complete != tt.complete {
			t.Errorf("%s: offsets %v complete %v, want %v %v", tt.query, got, *a.Complete, tt.offsets, tt.complete)
		}
		if a.Room != room || len(*a.Epoch) != 16 {
			t.Errorf("%s: room %q epoch %q", tt.query, a.Room, *a.Epoch)
		}
		if room == "chat:1" && (*a.Offset != 3 || *a.Epoch != epoch) {
			t.Errorf("%s: offset %d epoch %s, want 3 %s", tt.query, *a.Offset, *a.Epoch, epoch)
		}
	}

	// A room read before its first message gets the epoch its messages
	// will have.
	empty := getHistory(t, h, "room=chat:3")
	_, off, ep := publishKept(t, h, `{"room":"chat:3","data":null}`)
	if off != 1 || ep != *empty.Epoch || *empty.Offset != 0 {
		t.Errorf("first message of chat:3: offset %d epoch %s; before it: offset %d epoch %s", off, ep, *empty.Offset, *empty.Epoch)
	}
	if a := getHistory(t, h, "room=chat:3"); len(a.Messages) != 1 || a.Messages[0]["data"] != nil || !*a.Complete {
		t.Errorf("chat:3: %+v", a)
	}
}

// A room that kept fewer messages than were published says so: complete
// false from since 0, true from the oldest offset it still has.
func TestAPIHistoryTrimmed(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--history-rooms=kept", "--history-size=2")
	h := srv.Handler()
	for i := 1; i <= 3; i++ {
		if _, off, _ := publishKept(t, h, fmt.Sprintf(`{"room":"kept","data":%d}`, i)); off != uint64(i) {
			t.Fatalf("publish %d: offset %d", i, off)
		}
	}
	for _, tt := range []struct {
		query    string
		offsets  []uint64
		complete bool
	}{
		{"room=kept", []uint64{2, 3}, false},
		{"room=kept&since=0&limit=100", []uint64{2, 3}, false},
		{"room=kept&since=1", []uint64{2, 3}, true},
		{"room=kept&since=1&limit=1", []uint64{2}, false},
		{"room=kept&since=2", []uint64{3}, true},
	} {
		a := getHistory(t, h, tt.query)
		if got := offsets(t, "kept", a.Messages); !reflect.DeepEqual(got, tt.offsets) || *a.Complete != tt.complete || *a.Offset != 3 {
			t.Errorf("%s: offsets %v complete %v offset %d, want %v %v 3", tt.query, got, *a.Complete, *a.Offset, tt.offsets, tt.complete)
		}
	}
}

// The messages a WebSocket client received live are the ones history gives.
func TestAPIHistoryMatchesLive(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--history-rooms=live")
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := srv.Handler()
	alice := dialWS(t, ctx, hs.URL, "alice")
	alice.join(ctx, "live")
	var live []map[string]any
	for i := range 2 {
		publishKept(t, h, fmt.Sprintf(`{"room":"live","data":{"i":%d}}`, i))
		live = append(live, alice.next(ctx, "message"))
	}
	if a := getHistory(t, h, "room=live"); !reflect.DeepEqual(a.Messages, live) {
		t.Errorf("history %v, live %v", a.Messages, live)
	}
}

func TestAPIHistoryErrors(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--history-rooms=kept,chat:*")
	h := srv.Handler()
	for _, tt := range []struct {
		query     string
		status    int
		code      string
		inMessage string
	}{
		{"", 400, errBadRequest, "room is required"},
		{"since=1", 400, errBadRequest, "room is required"},
		{"room=", 400, errBadRequest, "room"},
		{"room=a%20b", 400, errBadRequest, "room"},
		{"room=" + strings.Repeat("r", 129), 400, errBadRequest, "128"},
		{"room=kept&since=-1", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&since=abc", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&since=1.5", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&since=%2B1", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&since=", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&since=0x10", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&since=1_000", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&since=18446744073709551616", 400, errBadRequest, "since must be a non-negative integer"},
		{"room=kept&limit=0", 400, errBadRequest, "limit must be a positive integer"},
		{"room=kept&limit=-5", 400, errBadRequest, "limit must be a positive integer"},
		{"room=kept&limit=ten", 400, errBadRequest, "limit must be a positive integer"},
		{"room=kept&limit=", 400, errBadRequest, "1000"},
		{"room=kept&limit=2.0", 400, errBadRequest, "limit"},
		{"room=kept&since=1&since=2", 400, errBadRequest, "once"},
		{"room=kept&room=chat:1", 400, errBadRequest, "once"},
		{"room=kept&snce=4", 400, errBadRequest, `"snce"`},
		{"room=kept&ROOM=x", 400, errBadRequest, `"ROOM"`},
		{"room=lobby", 404, errNoHistory, "--history-rooms"},
		{"room=chat", 404, errNoHistory, `room "chat" keeps no history`},
		{"room=lobby&since=abc", 400, errBadRequest, "since"}, // the query is checked first
	} {
		rec := call(t, h, "GET", "/api/history?"+tt.query, "k", "")
		m := wantError(t, rec, tt.status, tt.code)
		if msg := m["message"].(string); !strings.Contains(msg, tt.inMessage) {
			t.Errorf("%q: message %q does not mention %q", tt.query, msg, tt.inMessage)
		}
	}

	// Without any --history-rooms, every room is a 404 that says what to do.
	bare, _ := testServer(t, "--api-key=k")
	m := wantError(t, call(t, bare.Handler(), "GET", "/api/history?room=kept", "k", ""), 404, errNoHistory)
	if msg := m["message"].(string); !strings.Contains(msg, "--history-rooms") {
		t.Errorf("message %q", msg)
	}

	// Unauthenticated: 401 before anything is looked at.
	for _, key := range []string{"", "wrong"} {
		wantError(t, call(t, h, "GET", "/api/history?room=kept", key, ""), 401, errUnauthorized)
		wantError(t, call(t, h, "GET", "/api/history?room=lobby&limit=0", key, ""), 401, errUnauthorized)
	}
	rec := call(t, h, "POST", "/api/history?room=kept", "k", `{}`)
	wantError(t, rec, 405, errMethod)
	if rec.Header().Get("Allow") != "GET" {
		t.Errorf("Allow %q", rec.Header().Get("Allow"))
	}
}

// A store failure answers 500 internal and is logged, without message
// contents.
func TestAPIHistoryStoreFailure(t *testing.T) {
	srv, logs := testServer(t, "--api-key=k", "--history-rooms=kept")
	h := srv.Handler()
	publishKept(t, h, `{"room":"kept","data":"top-secret-message"}`)
	srv.api.(*api).history = failingHistory
	m := wantError(t, call(t, h, "GET", "/api/history?room=kept", "k", ""), 500, errInternal)
	if strings.Contains(fmt.Sprint(m), "secret") {
		t.Errorf("answer leaks the store's error: %v", m)
	}
	out := logs.String()
	if !strings.Contains(out, "api history failed") || !strings.Contains(out, "withheld") {
		t.Errorf("no error logged: %s", out)
	}
	for _, s := range []string{"secret-payload-bytes", "top-secret-message"} {
		if strings.Contains(out, s) {
			t.Errorf("log contains %q: %s", s, out)
		}
	}
	// The 404 still comes first: a room without history never reaches the store.
	wantError(t, call(t, h, "GET", "/api/history?room=other", "k", ""), 404, errNoHistory)
}

func TestHistoryLogError(t *testing.T) {
	for in, want := range map[string]string{
		"redis: connection refused": "redis: connection refused",
		`history of r: bad trailer: strconv.ParseUint: parsing "ab\"c": invalid syntax`: "history of r: bad trailer: strconv.ParseUint: parsing (payload bytes withheld): invalid syntax",
		`history of r: strconv.ParseUint: parsing "abc`:                                 "history of r: strconv.ParseUint: parsing (payload bytes withheld)",
	} {
		if got := historyLogError(errors.New(in)); got != want {
			t.Errorf("historyLogError(%q) = %q, want %q", in, got, want)
		}
	}
}

// With --history-users, /api/history of user:<id> reads the user's direct
// messages, as a join of that room recovers them.
func TestAPIHistoryOfAUser(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--history-users")
	h := srv.Handler()
	for _, d := range []string{`"one"`, `"two"`} {
		if rec := call(t, h, "POST", "/api/publish", "k", `{"user":"al","data":`+d+`}`); rec.Code != 200 {
			t.Fatalf("publish: %d %s", rec.Code, rec.Body)
		}
	}
	rec := call(t, h, "GET", "/api/history?room=user:al&since=1", "k", "")
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"data":"two"`) || strings.Contains(rec.Body.String(), `"data":"one"`) {
		t.Fatalf("history of user:al since 1: %d %s", rec.Code, rec.Body)
	}
	noUsers, _ := testServer(t, "--api-key=k")
	rec = call(t, noUsers.Handler(), "GET", "/api/history?room=user:al", "k", "")
	if rec.Code != 404 || !strings.Contains(rec.Body.String(), "--history-users") {
		t.Fatalf("without --history-users: %d %s", rec.Code, rec.Body)
	}
}
