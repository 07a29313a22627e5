package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// apiTimeout bounds the hub work of one request.
const apiTimeout = 10 * time.Second

type publishRequest struct {
	Room      string          `json:"room"`
	User      string          `json:"user"`
	Broadcast bool            `json:"broadcast"`
	Data      json.RawMessage `json:"data"`
}

type publishResponse struct {
	ID string `json:"id"`
	// Offset and Epoch place the message in its room's (or user's)
	// history; absent when it keeps none.
	Offset *uint64 `json:"offset,omitempty"`
	Epoch  string  `json:"epoch,omitempty"`
}

type disconnectRequest struct {
	User string `json:"user"`
}

type nodeStats struct {
	ID          string `json:"id"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Rooms       int    `json:"rooms"`
}

type statsResponse struct {
	Connections int         `json:"connections"`
	Users       int         `json:"users"`
	Rooms       int         `json:"rooms"`
	Nodes       []nodeStats `json:"nodes"`
}

// requestError is a client mistake, answered with its status and code.
type requestError struct {
	status     int
	code, text string
}

func (e *requestError) Error() string { return e.text }

func badRequest(format string, a ...any) *requestError {
	return &requestError{http.StatusBadRequest, errBadRequest, fmt.Sprintf(format, a...)}
}

// readJSON reads a strict JSON object from r's body into v: Content-Type
// application/json, at most apiMaxBody bytes, no unknown or duplicate
// fields, keys matched exactly (encoding/json alone would accept "ROOM"),
// nothing after the object. It returns the raw body and the keys present.
func readJSON(w http.ResponseWriter, r *http.Request, v any, fields ...string) ([]byte, map[string]bool, *requestError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, nil, &requestError{http.StatusUnsupportedMediaType, errMediaType, "send the body as Content-Type: application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, apiMaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, nil, &requestError{http.StatusRequestEntityTooLarge, errTooLarge,
				fmt.Sprintf("the body is over %d bytes", apiMaxBody)}
		}
		return nil, nil, badRequest("the body could not be read")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil, badRequest("the body is empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, nil, badRequest("invalid JSON body: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, badRequest("invalid JSON body: unexpected data after the object")
	}
	present, rerr := exactKeys(body, fields)
	if rerr != nil {
		return nil, nil, rerr
	}
	return body, present, nil
}

// jsonProblem turns a decoding error into a message without Go type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("field %q must be a %s", te.Field, jsonKind(te.Type.Kind().String()))
	case errors.As(err, &te):
		return "the body must be a JSON object"
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends in the middle of a value"
	}
	return err.Error() // e.g. `json: unknown field "rom"`
}

func jsonKind(k string) string {
	switch k {
	case "bool":
		return "boolean"
	case "struct", "map":
		return "JSON object"
	}
	return k
}

// exactKeys walks the top-level object and refuses keys that differ from
// the field names (case included) and keys given twice.
func exactKeys(body []byte, fields []string) (map[string]bool, *requestError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // '{', checked by Decode already
		return nil, badRequest("the body must be a JSON object")
	}
	present := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badRequest("invalid JSON body")
		}
		k, _ := tok.(string)
		known := false
		for _, f := range fields {
			known = known || f == k
		}
		switch {
		case !known:
			return nil, badRequest("unknown field %q (field names are case-sensitive)", k)
		case present[k]:
			return nil, badRequest("field %q is given twice", k)
		}
		present[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, badRequest("invalid JSON body")
		}
	}
	return present, nil
}

func validUser(field, u string) *requestError {
	if checkUser(u) != nil {
		return badRequest("%s must be 1 to %d bytes of UTF-8 without control characters", field, maxUserBytes)
	}
	return nil
}

func validRoom(room string) *requestError {
	if msg := protocol.ValidateRoom(room); msg != "" {
		return badRequest("%s", msg)
	}
	return nil
}

func (a *api) publish(w http.ResponseWriter, r *http.Request, key int) {
	var req publishRequest
	body, present, rerr := readJSON(w, r, &req, "room", "user", "broadcast", "data")
	if rerr == nil {
		rerr = checkPublish(&req, present)
	}
	if rerr != nil {
		writeError(w, rerr.status, rerr.code, rerr.text)
		return
	}
	idemKey := r.Header.Get("Idempotency-Key")
	if _, given := r.Header["Idempotency-Key"]; !given {
		status, answer := a.doPublish(r.Context(), &req)
		retryLater(w, status)
		writeRaw(w, status, answer)
		return
	}
	if len(idemKey) == 0 || len(idemKey) > idempotencyKeyMax || !printableASCII(idemKey) {
		writeError(w, http.StatusBadRequest, errBadRequest,
			fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", idempotencyKeyMax))
		return
	}
	if a.shared != nil {
		a.publishShared(w, r, &req, key, idemKey, body)
		return
	}
	scope := strconv.Itoa(key) + "\x00" + routePublish + "\x00" + idemKey
	outcome, e, err := a.idem.begin(r.Context(), scope, sha256.Sum256(body))
	switch {
	case err != nil: // the client went away while the first request ran
		writeError(w, http.StatusServiceUnavailable, errInternal, "request cancelled")
	case outcome == idemMismatch:
		writeError(w, http.StatusUnprocessableEntity, errIdemReused,
			"this Idempotency-Key was used with a different request in the last 5 minutes; use a new key")
	case outcome == idemReplay:
		w.Header().Set(idempotencyReplays, "true")
		writeRaw(w, e.answer.status, e.answer.body)
	default:
		// Waiters are released whatever happens, even if publishing panics.
		status, answer := http.StatusInternalServerError, internalAnswer
		defer func() { a.idem.finish(e, status, answer) }()
		status, answer = a.doPublish(r.Context(), &req)
		retryLater(w, status)
		writeRaw(w, status, answer)
	}
}

// retryLater tells a client refused with 503 when to try again.
func retryLater(w http.ResponseWriter, status int) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
}

// internalAnswer is what waiters of a request that never finished get.
var internalAnswer = []byte(`{"error":"internal","message":"the first request with this Idempotency-Key failed; retry"}` + "\n")

// checkPublish wants exactly one target and data.
func checkPublish(req *publishRequest, present map[string]bool) *requestError {
	targets := 0
	for _, f := range []string{"room", "user", "broadcast"} {
		if present[f] {
			targets++
		}
	}
	switch {
	case targets != 1:
		return badRequest(`give exactly one target: "room", "user" or "broadcast": true`)
	case !present["data"]:
		return badRequest(`field "data" is required (any JSON value)`)
	case present["broadcast"] && !req.Broadcast:
		return badRequest(`"broadcast" must be true when given`)
	case present["room"]:
		return validRoom(req.Room)
	case present["user"]:
		return validUser("user", req.User)
	}
	return nil
}

// doPublish hands the message to the hub and encodes the answer.
func (a *api) doPublish(ctx context.Context, req *publishRequest) (int, []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	var p switchboard.Published
	var err error
	switch {
	case req.Room != "":
		p, err = a.hub.Publish(ctx, req.Room, req.Data)
	case req.User != "":
		p, err = a.hub.SendToUser(ctx, req.User, req.Data)
	default:
		p.ID, err = a.hub.Broadcast(ctx, req.Data)
	}
	if err != nil {
		a.log.Error("api publish failed", "error", err)
		if errors.Is(err, switchboard.ErrUnavailable) {
			// Not remembered for an Idempotency-Key: a retry publishes.
			b, _ := json.Marshal(apiError{Error: errUnavailable, Message: "the broker is unreachable: the message was not published; retry"})
			return http.StatusServiceUnavailable, append(b, '\n')
		}
		b, _ := json.Marshal(apiError{Error: errInternal, Message: "the message could not be published"})
		return http.StatusInternalServerError, append(b, '\n')
	}
	resp := publishResponse{ID: p.ID, Epoch: p.Epoch}
	if p.Epoch != "" {
		resp.Offset = &p.Offset
	}
	b, _ := json.Marshal(resp)
	return http.StatusOK, append(b, '\n')
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (a *api) disconnect(w http.ResponseWriter, r *http.Request, _ int) {
	disconnectUser(w, r, a.hub, a.log, "api")
}

// disconnectUser serves a {"user": id} request by closing the user's
// connections on every node with 4003, and reports whether it did. who
// names the caller in the log.
func disconnectUser(w http.ResponseWriter, r *http.Request, hub *switchboard.Hub, log *slog.Logger, who string) (string, bool) {
	var req disconnectRequest
	_, present, rerr := readJSON(w, r, &req, "user")
	if rerr == nil && !present["user"] {
		rerr = badRequest(`field "user" is required`)
	}
	if rerr == nil {
		rerr = validUser("user", req.User)
	}
	if rerr != nil {
		writeError(w, rerr.status, rerr.code, rerr.text)
		return "", false
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	if err := hub.Disconnect(ctx, req.User); err != nil {
		log.Error(who+" disconnect failed", "error", err)
		if errors.Is(err, switchboard.ErrUnavailable) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, errUnavailable, "the broker is unreachable: the disconnect was not sent; retry")
			return "", false
		}
		writeError(w, http.StatusInternalServerError, errInternal, "the disconnect could not be sent")
		return "", false
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": req.User})
	return req.User, true
}

func (a *api) presence(w http.ResponseWriter, r *http.Request, _ int) {
	room := r.URL.Query().Get("room")
	if !r.URL.Query().Has("room") {
		writeError(w, http.StatusBadRequest, errBadRequest, "query parameter room is required: /api/presence?room=<room>")
		return
	}
	if rerr := validRoom(room); rerr != nil {
		writeError(w, rerr.status, rerr.code, rerr.text)
		return
	}
	users, err := a.hub.RoomUsers(r.Context(), room)
	if err != nil {
		a.log.Error("api presence failed", "error", err)
		writeError(w, http.StatusInternalServerError, errInternal, "presence is unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": room, "users": nonNil(users)})
}

func (a *api) users(w http.ResponseWriter, r *http.Request, _ int) {
	users, err := a.hub.OnlineUsers(r.Context())
	if err != nil {
		a.log.Error("api users failed", "error", err)
		writeError(w, http.StatusInternalServerError, errInternal, "presence is unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": nonNil(users)})
}

// stats answers for the cluster: distinct users and rooms, connections
// summed, and each live node's own counts (this node first; the others as
// of their last heartbeat).
func (a *api) stats(w http.ResponseWriter, _ *http.Request, _ int) {
	st, nodes := a.hub.ClusterStats()
	resp := statsResponse{Connections: st.Connections, Users: st.Users, Rooms: st.Rooms}
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, nodeStats{ID: n.ID, Connections: n.Connections, Users: n.Users, Rooms: n.Rooms})
	}
	writeJSON(w, http.StatusOK, resp)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
