package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard"
)

// History page sizes of GET /api/history.
const (
	historyDefaultLimit = 100
	historyMaxLimit     = 1000 // larger limits are capped
)

// historyReader reads a room's kept messages (Hub.History).
type historyReader func(ctx context.Context, room string, since uint64, limit int) (switchboard.RoomHistory, error)

type historyResponse struct {
	Room string `json:"room"`
	// Offset is the room's newest offset and Epoch its continuity: a
	// client that has every message up to Offset in Epoch is up to date.
	Offset   uint64            `json:"offset"`
	Epoch    string            `json:"epoch"`
	Complete bool              `json:"complete"`
	Messages []json.RawMessage `json:"messages"` // message frames, oldest first
}

// historyParams are the query parameters GET /api/history takes.
var historyParams = []string{"room", "since", "limit"}

// roomHistory answers GET /api/history?room=r&since=N&limit=L: the kept
// messages of room with an offset above since, oldest first.
func (a *api) roomHistory(w http.ResponseWriter, r *http.Request, _ int) {
	room, since, limit, rerr := historyQuery(r)
	if rerr == nil && !a.hub.KeepsHistory(room) {
		advice := "add it, or a prefix ending in * that matches it, to the server's --history-rooms"
		if strings.HasPrefix(room, "user:") {
			advice = "a user's direct messages are kept with --history-users=true"
		}
		rerr = &requestError{http.StatusNotFound, errNoHistory, fmt.Sprintf("room %q keeps no history: %s", room, advice)}
	}
	if rerr != nil {
		writeError(w, rerr.status, rerr.code, rerr.text)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	h, err := a.history(ctx, room, since, limit)
	if err != nil {
		if r.Context().Err() == nil { // else the client went away: nothing broken
			a.log.Error("api history failed", "error", historyLogError(err))
		}
		writeError(w, http.StatusInternalServerError, errInternal, "the room's history could not be read")
		return
	}
	msgs := h.Messages
	if msgs == nil {
		msgs = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, historyResponse{Room: room, Offset: h.Offset, Epoch: h.Epoch, Complete: h.Complete, Messages: msgs})
}

// historyQuery reads and checks the query: room required, since and limit
// optional, each given at most once, and nothing else.
func historyQuery(r *http.Request) (room string, since uint64, limit int, rerr *requestError) {
	q := r.URL.Query()
	for name, vals := range q {
		switch {
		case !slices.Contains(historyParams, name):
			return "", 0, 0, badRequest("unknown query parameter %q: /api/history takes room, since and limit", name)
		case len(vals) > 1:
			return "", 0, 0, badRequest("query parameter %s is given %d times: give it once", name, len(vals))
		}
	}
	if !q.Has("room") {
		return "", 0, 0, badRequest("query parameter room is required: /api/history?room=<room>")
	}
	room = q.Get("room")
	if rerr := validRoom(room); rerr != nil {
		return "", 0, 0, rerr
	}
	if q.Has("since") {
		var err error
		if since, err = strconv.ParseUint(q.Get("since"), 10, 64); err != nil {
			return "", 0, 0, badRequest("since must be a non-negative integer: the offset of the last message you have (0, the default, reads from the oldest kept one)")
		}
	}
	limit = historyDefaultLimit
	if q.Has("limit") {
		n, err := strconv.ParseUint(q.Get("limit"), 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange), err == nil && n > historyMaxLimit:
			limit = historyMaxLimit
		case err != nil || n == 0:
			return "", 0, 0, badRequest("limit must be a positive integer: how many messages to return (default %d, at most %d)",
				historyDefaultLimit, historyMaxLimit)
		default:
			limit = int(n)
		}
	}
	return room, since, limit, nil
}

// historyLogError is err's text for the log. A store that finds a kept
// payload malformed may quote part of it (strconv's `parsing "…"`): those
// bytes can be message contents, and are withheld.
func historyLogError(err error) string {
	s := err.Error()
	i := strings.Index(s, `parsing "`)
	if i < 0 {
		return s
	}
	rest := ""
	if j := strings.LastIndex(s, `": `); j > i {
		rest = s[j+1:]
	}
	return s[:i] + "parsing (payload bytes withheld)" + rest
}
