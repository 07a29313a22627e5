package presence

import (
	"slices"
	"sort"
	"sync"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Diffs collect join and leave changes of big rooms between two flushes,
// for a hub to announce as one presence_diff frame per room and interval.
// Each user touched in an interval appears once in the next diff,
// with its last change: a user who joined and left is sent as a leave
// (harmless to members who never saw the join), so that a snapshot taken
// in between is always corrected by the diff that follows it. The zero
// Diffs are ready to use; mu is a leaf lock.
type Diffs struct {
	mu    sync.Mutex
	rooms map[string]*RoomDiff
	// snapshots caches, per big room, the encoded user list as it stood at
	// the last flush. A joiner's ack carries it and the next presence_diff
	// brings the joiner up to date, so a room of N filling up costs O(N)
	// snapshot encodings per interval instead of one sort of N per join.
	snapshots map[string][]byte
	// flushes and gens count flushes and per-room invalidations, so that a
	// snapshot read without mu is cached only if its room did not change.
	flushes uint64
	gens    map[string]uint64
}

// RoomDiff is one room's changes in an interval.
type RoomDiff struct {
	joins, leaves map[string]struct{}
}

// Add records that user joined (or left) room in this interval.
func (d *Diffs) Add(room, user string, joined bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rooms == nil {
		d.rooms = make(map[string]*RoomDiff)
	}
	rd := d.rooms[room]
	if rd == nil {
		rd = &RoomDiff{joins: map[string]struct{}{}, leaves: map[string]struct{}{}}
		d.rooms[room] = rd
	}
	add, other := rd.joins, rd.leaves
	if !joined {
		add, other = rd.leaves, rd.joins
	}
	delete(other, user)
	add[user] = struct{}{}
}

// AddIfPending adds the change to the room's pending diff, if it has one,
// and says so: a change must not overtake the room's pending diff as a
// direct frame (a room that just fell under the threshold).
func (d *Diffs) AddIfPending(room, user string, joined bool) bool {
	d.mu.Lock()
	_, pending := d.rooms[room]
	d.mu.Unlock()
	if pending {
		d.Add(room, user, joined)
	}
	return pending
}

// Invalidate drops the room's cached snapshot after a change that was
// announced directly (the room was small enough) and so is in no diff.
func (d *Diffs) Invalidate(room string) {
	d.mu.Lock()
	delete(d.snapshots, room)
	if d.gens == nil {
		d.gens = make(map[string]uint64)
	}
	d.gens[room]++
	d.mu.Unlock()
}

// Take returns the pending changes and starts a new interval.
func (d *Diffs) Take() map[string]*RoomDiff {
	d.mu.Lock()
	defer d.mu.Unlock()
	rooms := d.rooms
	d.rooms = nil
	d.snapshots = nil
	d.gens = nil
	d.flushes++
	return rooms
}

// Snapshot returns the room's users as of the last flush, encoded as a JSON
// array: the current users less the joins pending since then, plus the
// leaves. The current users are read without d.mu held (a cluster Presence
// reports changes into d while holding its own lock); a change caught
// between the two reads is in the pending diff with its last value, so the
// next diff corrects the snapshot. The result is cached only if the room
// was not invalidated, nor the diffs flushed, meanwhile.
func (d *Diffs) Snapshot(room string, current func() ([]string, error)) ([]byte, error) {
	d.mu.Lock()
	if b, ok := d.snapshots[room]; ok {
		d.mu.Unlock()
		return b, nil
	}
	flushes, gen := d.flushes, d.gens[room]
	d.mu.Unlock()
	users, err := current()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if rd := d.rooms[room]; rd != nil {
		users = slices.DeleteFunc(users, func(u string) bool { _, ok := rd.joins[u]; return ok })
		var gone []string
		for u := range rd.leaves {
			if _, dup := slices.BinarySearch(users, u); !dup {
				gone = append(gone, u)
			}
		}
		users = append(users, gone...)
		sort.Strings(users)
	}
	b := protocol.AppendStrings(make([]byte, 0, 16*len(users)), users)
	if flushes == d.flushes && gen == d.gens[room] {
		if d.snapshots == nil {
			d.snapshots = make(map[string][]byte)
		}
		d.snapshots[room] = b
	}
	return b, nil
}

// Sorted returns the users who joined and who left, each sorted.
func (rd *RoomDiff) Sorted() (joins, leaves []string) {
	return sortedKeys(rd.joins), sortedKeys(rd.leaves)
}

func sortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
