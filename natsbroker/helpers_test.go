package natsbroker

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
)

// natsURL is the server the tests use: $NATS_URL, else 127.0.0.1:4222 if
// it answers, else an in-process nats-server.
var natsURL string

func TestMain(m *testing.M) {
	stop := findNATS()
	code := m.Run()
	stop()
	stopJetStream()
	if code == 0 {
		// Everything the tests started is closed by now: any goroutine
		// left is a leak (a broker's, or a history read's).
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func findNATS() (stop func()) {
	if u := os.Getenv("NATS_URL"); u != "" {
		natsURL = u
		return func() {}
	}
	if nc, err := nats.Connect("nats://127.0.0.1:4222", nats.Timeout(500*time.Millisecond)); err == nil {
		nc.Close()
		natsURL = "nats://127.0.0.1:4222"
		return func() {}
	}
	dir, err := os.MkdirTemp("", "natsbroker-js-")
	if err != nil {
		panic(err)
	}
	s, err := runServer(-1, dir)
	if err != nil {
		panic("no NATS at 127.0.0.1:4222 and cannot run one in process: " + err.Error())
	}
	natsURL = s.ClientURL()
	inProcess = s
	return func() {
		s.Shutdown()
		s.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
}

// inProcess is the in-process server natsURL points to, if it does.
var inProcess *server.Server

// runServer starts an in-process NATS server on port (-1: a random one),
// with JetStream keeping its files in storeDir unless that is "".
func runServer(port int, storeDir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: storeDir != "", StoreDir: storeDir})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errNotReady
	}
	return s, nil
}

var errNotReady = &net.OpError{Op: "listen", Err: os.ErrDeadlineExceeded}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// uniquePrefix namespaces one test's subjects.
func uniquePrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "sbtest." + hex.EncodeToString(b) + "."
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newBroker(t testing.TB, url, prefix string) *Broker {
	t.Helper()
	b, err := New(Options{URL: url, Prefix: prefix, Logger: quietLogger(),
		ReconnectWait: 50 * time.Millisecond, ReconnectJitter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// suite counts subscribers through the brokers of the test: core NATS
// has no cluster-wide count of one subject's subscriptions short of the
// monitoring endpoint, so it sums the Stats of the nodes made for ns.
func suite(url string) brokertest.Suite {
	nodes := map[string][]*Broker{}
	return brokertest.Suite{
		Make: func(t *testing.T, ns string) switchboard.Broker {
			b := newBroker(t, url, ns)
			nodes[ns] = append(nodes[ns], b)
			return b
		},
		Subscribers: func(t *testing.T, ns, channel string) int {
			n := 0
			for _, b := range nodes[ns] {
				b.mu.Lock()
				if sub := b.subs[channel]; sub != nil && sub.IsValid() {
					n++
				}
				b.mu.Unlock()
			}
			return n
		},
	}
}
