package presence

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Change is one cluster-wide transition of a user, as a presence reports
// it to the hub.
type Change struct {
	Kind string // UserOnline, UserOffline, RoomJoin or RoomLeave
	User string
	Room string // for RoomJoin and RoomLeave
	// Members is how many users the room has after the change; the hub
	// batches the announcements of big rooms (Diffs).
	Members int
	// Notify asks the hub to report the change to its application. One
	// node of the cluster does: the one whose connection caused it (both,
	// when two devices on two nodes race), or for a node that went silent,
	// left or restarted, and for repairs from a snapshot, the oldest live
	// node.
	Notify bool
}

// Transitions.
const (
	UserOnline  = "user.online"  // the user's first connection
	UserOffline = "user.offline" // the user's last connection is gone
	RoomJoin    = "room.join"    // the user's first connection entered the room
	RoomLeave   = "room.leave"   // the user's last connection left the room
)

// Event is one transition as the application is told of it.
type Event struct {
	Kind string
	User string
	Room string // for room.join and room.leave
	Time time.Time
}

// Notifier runs an application's callback on a goroutine of its own, in
// the order of the transitions: a presence reports them under its lock,
// and the callback must be free to call back into the hub. The zero
// Notifier, and one started with a nil callback, drop every event.
type Notifier struct {
	cb      func(Event)
	log     *slog.Logger
	onPanic func()
	mu      sync.Mutex // a leaf
	queue   []Event
	wake    chan struct{}
	done    chan struct{}
	stopped bool
}

// Start runs cb for every Add until Stop. A panic in cb is logged and
// counted with onPanic; the next event still runs.
func (n *Notifier) Start(cb func(Event), log *slog.Logger, onPanic func()) {
	if cb == nil {
		return
	}
	n.cb, n.log, n.onPanic = cb, log, onPanic
	n.wake, n.done = make(chan struct{}, 1), make(chan struct{})
	go n.run()
}

// Add queues one event; it never blocks.
func (n *Notifier) Add(ev Event) {
	if n.cb == nil {
		return
	}
	n.mu.Lock()
	n.queue = append(n.queue, ev)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Stop delivers what is queued, then ends the goroutine.
func (n *Notifier) Stop() {
	if n.cb == nil {
		return
	}
	n.mu.Lock()
	already := n.stopped
	n.stopped = true
	n.mu.Unlock()
	if !already {
		// Never block: a full buffer means a wake-up is pending already,
		// or run has seen stopped and returned; either way done closes.
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
	<-n.done
}

func (n *Notifier) run() {
	defer close(n.done)
	for range n.wake {
		for {
			n.mu.Lock()
			batch, stopped := n.queue, n.stopped
			n.queue = nil
			n.mu.Unlock()
			for _, ev := range batch {
				n.call(ev)
			}
			if len(batch) == 0 {
				if stopped {
					return
				}
				break
			}
		}
	}
}

func (n *Notifier) call(ev Event) {
	defer func() {
		if p := recover(); p != nil {
			if n.onPanic != nil {
				n.onPanic()
			}
			n.log.Error("OnPresence panicked", "panic", fmt.Sprint(p), "kind", ev.Kind)
		}
	}()
	n.cb(ev)
}
