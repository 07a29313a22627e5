package history

import (
	"slices"
	"strconv"
	"testing"
)

// fakeSink is a connection's queue, for the cursor alone.
type fakeSink struct {
	queued   []string
	reserved int
	limit    int // bytes that may be reserved; 0: no bound
	gaps     int
	fills    []*Cursor
}

func (s *fakeSink) Push(frame []byte) bool    { s.queued = append(s.queued, string(frame)); return true }
func (s *fakeSink) PushText(text []byte) bool { return s.Push(text) }
func (s *fakeSink) Unreserve(n int)           { s.reserved -= n }
func (s *fakeSink) GapLost()                  { s.gaps++ }
func (s *fakeSink) Fill(cur *Cursor)          { s.fills = append(s.fills, cur) }
func (s *fakeSink) Reserve(n int) bool {
	if s.limit > 0 && s.reserved+n > s.limit {
		return false
	}
	s.reserved += n
	return true
}

func msg(offset int) []byte { return []byte("m" + strconv.Itoa(offset)) }

// joined is a connection that joined stream "st" at offset in epoch "e"
// (ownID set: with echo off).
func joined(offset uint64, ownID string) (*fakeSink, Cursors, *Cursor) {
	s := &fakeSink{}
	var cs Cursors
	cur := cs.Hold("st")
	cur.Joined(s, &Page{Offset: offset, Epoch: "e"}, false, ownID)
	return s, cs, cur
}

func deliver(cs Cursors, s *fakeSink, epoch string, offsets ...int) {
	for _, o := range offsets {
		cs.Deliver(s, "st", epoch, uint64(o), msg(o))
	}
}

// Messages published while a join reads history wait, then follow the
// join's position in offset order, without duplicates.
func TestCursorHoldsLiveMessagesDuringAJoin(t *testing.T) {
	s := &fakeSink{}
	var cs Cursors
	cur := cs.Hold("st")
	deliver(cs, s, "e", 5, 4, 3) // 3 was read by the join already
	if len(s.queued) != 0 || s.reserved != 6 {
		t.Fatalf("while waiting: queued %v, reserved %d", s.queued, s.reserved)
	}
	cur.Joined(s, &Page{Offset: 3, Epoch: "e"}, false, "")
	if !slices.Equal(s.queued, []string{"m4", "m5"}) || s.reserved != 0 || len(s.fills) != 0 {
		t.Fatalf("after the join: queued %v, reserved %d, fills %d", s.queued, s.reserved, len(s.fills))
	}
	if next, epoch := cur.FillFrom(); next != 6 || epoch != "e" || cs.FollowedUpTo("st", "e") != 6 {
		t.Fatalf("position %d %q", next, epoch)
	}
}

// A message past a gap is held while the gap is filled; the filled
// messages come first, then what was held; a later epoch starts afresh.
func TestCursorFillsAGap(t *testing.T) {
	s, cs, cur := joined(1, "")
	deliver(cs, s, "e", 2, 2, 5, 6)
	if !slices.Equal(s.queued, []string{"m2"}) || len(s.fills) != 1 || !cur.Waiting() {
		t.Fatalf("before the fill: queued %v, fills %d, waiting %v", s.queued, len(s.fills), cur.Waiting())
	}
	cur.Fill(s, []Entry{{Offset: 2, Text: msg(2)}, {Offset: 3, Text: msg(3)}, {Offset: 4, Text: msg(4)}}, 6)
	if !slices.Equal(s.queued, []string{"m2", "m3", "m4", "m5", "m6"}) || s.reserved != 0 {
		t.Fatalf("after the fill: queued %v, reserved %d", s.queued, s.reserved)
	}
	deliver(cs, s, "new", 1)
	if s.queued[len(s.queued)-1] != "m1" || cs.FollowedUpTo("st", "new") != 2 {
		t.Fatalf("a new epoch was not taken up: %v", s.queued)
	}
}

// A gap the store no longer covers is given up and counted; own messages
// with echo off advance the cursor without being delivered.
func TestCursorGivesUpLostGapsAndSkipsOwnMessages(t *testing.T) {
	s, cs, cur := joined(0, "me")
	cs.Skip(s, "st", "e", 1)
	deliver(cs, s, "e", 2, 4)
	if len(s.fills) != 1 {
		t.Fatalf("gap before 4 not filled: %d fills", len(s.fills))
	}
	cur.Fill(s, []Entry{{Offset: 3, Origin: "me", Text: msg(3)}}, FillNone)
	if !slices.Equal(s.queued, []string{"m2", "m4"}) || s.gaps != 0 || cs.FollowedUpTo("st", "e") != 5 {
		t.Fatalf("queued %v, gaps %d", s.queued, s.gaps)
	}
	deliver(cs, s, "e", 7)
	cur.Fill(s, nil, FillNone) // the read failed
	if s.gaps != 1 || s.queued[len(s.queued)-1] != "m7" {
		t.Fatalf("a lost gap: queued %v, gaps %d", s.queued, s.gaps)
	}
}

// Held messages count against the queue bound; leaving gives them back.
func TestCursorHeldBytesAreBounded(t *testing.T) {
	s := &fakeSink{limit: 4}
	var cs Cursors
	cs.Hold("st")
	if !cs.Deliver(s, "st", "e", 1, msg(1)) || !cs.Deliver(s, "st", "e", 2, msg(2)) {
		t.Fatal("held messages within the bound refused")
	}
	if cs.Deliver(s, "st", "e", 3, msg(3)) {
		t.Fatal("a held message past the bound was kept")
	}
	cs.Drop(s, "st")
	if s.reserved != 0 || cs.Find("st") != nil {
		t.Fatalf("after leaving: reserved %d", s.reserved)
	}
}

// The periodic check fills a cursor behind the stream, and leaves alone
// one that is up to date, waiting, or in another epoch.
func TestCursorCatchUp(t *testing.T) {
	s, cs, cur := joined(3, "")
	cur.CatchUp(s, Page{Offset: 3, Epoch: "e"})
	cur.CatchUp(s, Page{Offset: 9, Epoch: "other"})
	if len(s.fills) != 0 {
		t.Fatal("an up-to-date cursor was filled")
	}
	cur.CatchUp(s, Page{Offset: 4, Epoch: "e"})
	cur.CatchUp(s, Page{Offset: 4, Epoch: "e"})
	if len(s.fills) != 1 || !cur.Waiting() {
		t.Fatalf("%d fills for a cursor one behind", len(s.fills))
	}
	var followed []string
	cs.Each(func(c *Cursor) { followed = append(followed, c.Stream()) })
	if len(followed) != 0 {
		t.Fatalf("a waiting cursor listed as following: %v", followed)
	}
}
