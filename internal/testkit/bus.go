package testkit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
)

// Bus is an in-process stand-in for a broker server, for unit tests of
// the presence protocol and of hubs that need a multi-node broker (the
// real brokers run the same checks in internal/brokertest). Each node gets
// its payloads in publish order on its own goroutine, as from a real
// broker connection. Its nodes implement the root package's Broker.
type Bus struct {
	mu    sync.Mutex
	nodes []*BusNode
	// drop, if set, loses a payload on its way to one node.
	drop func(to *BusNode, channel string, payload []byte) bool
}

// Drop makes the bus lose every payload for which lose returns true.
func (b *Bus) Drop(lose func(to *BusNode, channel string, payload []byte) bool) {
	b.mu.Lock()
	b.drop = lose
	b.mu.Unlock()
}

// Pause holds every delivery until the returned function is called, so a
// test can make two nodes' changes race.
func (b *Bus) Pause() (resume func()) {
	b.mu.Lock()
	gate := make(chan struct{})
	for _, n := range b.nodes {
		n.gate.Store(&gate)
	}
	b.mu.Unlock()
	return func() { close(gate) }
}

// BusNode is one node's connection to the bus.
type BusNode struct {
	gate atomic.Pointer[chan struct{}]
	bus  *Bus
	in   chan [2][]byte
	done chan struct{}
	once sync.Once
	subs sync.Map
}

// Node connects a new node to the bus.
func (b *Bus) Node() *BusNode {
	n := &BusNode{bus: b, in: make(chan [2][]byte, 1<<14), done: make(chan struct{})}
	b.mu.Lock()
	b.nodes = append(b.nodes, n)
	b.mu.Unlock()
	return n
}

// Start delivers the payloads of subscribed channels until Close.
func (n *BusNode) Start(_ context.Context, deliver func(string, []byte)) error {
	go func() {
		for {
			select {
			case m := <-n.in:
				if g := n.gate.Load(); g != nil {
					select {
					case <-*g:
					case <-n.done:
						return
					}
				}
				deliver(string(m[0]), m[1])
			case <-n.done:
				return
			}
		}
	}()
	return nil
}

// Publish hands payload to every node subscribed to channel, this one
// included.
func (n *BusNode) Publish(_ context.Context, channel string, payload []byte) error {
	select {
	case <-n.done:
		return errors.New("bus node closed")
	default:
	}
	n.bus.mu.Lock()
	defer n.bus.mu.Unlock()
	for _, to := range n.bus.nodes {
		if _, ok := to.subs.Load(channel); !ok {
			continue
		}
		if n.bus.drop != nil && n.bus.drop(to, channel, payload) {
			continue
		}
		select {
		case to.in <- [2][]byte{[]byte(channel), slices.Clone(payload)}:
		case <-to.done:
		}
	}
	return nil
}

// Subscribe starts hearing channel.
func (n *BusNode) Subscribe(_ context.Context, channel string) error {
	n.subs.Store(channel, true)
	return nil
}

// Unsubscribe stops hearing channel.
func (n *BusNode) Unsubscribe(_ context.Context, channel string) error {
	n.subs.Delete(channel)
	return nil
}

// Close disconnects the node; its deliveries stop.
func (n *BusNode) Close() error {
	n.once.Do(func() { close(n.done) })
	return nil
}
