package switchboard

import (
	"sort"
	"sync"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// presenceDiffs collects join and leave changes of big rooms between two
// flushes. A user who joins and leaves within one interval cancels out:
// the members never needed to hear of it.
type presenceDiffs struct {
	mu    sync.Mutex
	rooms map[string]*roomDiff
}

type roomDiff struct {
	joins, leaves map[string]struct{}
}

func (d *presenceDiffs) add(room, user string, joined bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rooms == nil {
		d.rooms = make(map[string]*roomDiff)
	}
	rd := d.rooms[room]
	if rd == nil {
		rd = &roomDiff{joins: map[string]struct{}{}, leaves: map[string]struct{}{}}
		d.rooms[room] = rd
	}
	add, cancel := rd.joins, rd.leaves
	if !joined {
		add, cancel = rd.leaves, rd.joins
	}
	if _, ok := cancel[user]; ok {
		delete(cancel, user)
		return
	}
	add[user] = struct{}{}
}

// take returns the pending changes and starts a new interval.
func (d *presenceDiffs) take() map[string]*roomDiff {
	d.mu.Lock()
	defer d.mu.Unlock()
	rooms := d.rooms
	d.rooms = nil
	return rooms
}

// flushPresenceDiffs announces each big room's changes as one frame.
func (h *Hub) flushPresenceDiffs() {
	for room, rd := range h.diffs.take() {
		if len(rd.joins) == 0 && len(rd.leaves) == 0 {
			continue
		}
		h.announce(room, protocol.PresenceDiff(room, sortedKeys(rd.joins), sortedKeys(rd.leaves)))
	}
}

func sortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
