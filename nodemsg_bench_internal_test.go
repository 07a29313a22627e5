package switchboard

import (
	"io"
	"log/slog"
	"strconv"
	"testing"
)

// BenchmarkTopRooms is the dashboard's once-a-second walk of a node's
// rooms: 10,000 rooms of 1 to 100 users (rooms of users registered
// directly, without sockets).
func BenchmarkTopRooms(b *testing.B) {
	h, err := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for i := range 10000 {
		room := "room-" + strconv.Itoa(i)
		for u := range 1 + i%100 {
			c := &Conn{hub: h, user: "u" + strconv.Itoa(u)}
			if _, _, ok := h.reg.joinRoom(c, room, false); !ok {
				b.Fatal("join refused")
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if top := h.TopRooms(10); len(top) != 10 || top[0].Users != 100 {
			b.Fatalf("top rooms: %v", top)
		}
	}
}
