package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/brokertest"
)

// redisURL is the server the tests use: $REDIS_URL, else 127.0.0.1:6379
// if it answers, else a redis-server this process starts. Empty if none.
var (
	redisURL  string
	noRedisIs string // why there is no server
)

func TestMain(m *testing.M) {
	stop := findRedis()
	code := m.Run()
	stop()
	stopSharedCluster()
	os.Exit(code)
}

func findRedis() (stop func()) {
	stop = func() {}
	if u := os.Getenv("REDIS_URL"); u != "" {
		redisURL = u
		return stop
	}
	if ping("redis://127.0.0.1:6379/0") == nil {
		redisURL = "redis://127.0.0.1:6379/0"
		return stop
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		noRedisIs = "no Redis at 127.0.0.1:6379 and no redis-server binary (apt-get install redis-server, or set REDIS_URL)"
		return stop
	}
	port, err := freePort()
	if err != nil {
		noRedisIs = err.Error()
		return stop
	}
	cmd, err := startRedisServer(port)
	if err != nil {
		noRedisIs = "cannot start redis-server: " + err.Error()
		return stop
	}
	redisURL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
}

func needRedis(t testing.TB) string {
	t.Helper()
	if redisURL == "" {
		t.Skip("skipping: " + noRedisIs)
	}
	return redisURL
}

func ping(url string) error {
	o, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	o.DialTimeout, o.MaxRetries = 500*time.Millisecond, -1
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedisServer runs a redis-server without persistence on port and
// waits until it answers.
func startRedisServer(port int) (*exec.Cmd, error) {
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ping(url) != nil {
		select {
		case <-deadline:
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("redis-server on port %d did not answer", port)
		case <-tick.C:
		}
	}
	return cmd, nil
}

// uniquePrefix namespaces one test's channels.
func uniquePrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "sbtest:" + hex.EncodeToString(b) + ":"
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newBroker(t testing.TB, url, prefix string) *Broker {
	t.Helper()
	b, err := New(Options{URL: url, Prefix: prefix, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// numsub is PUBSUB NUMSUB of a prefixed channel.
func numsub(t testing.TB, url, channel string) int {
	t.Helper()
	o, _ := redis.ParseURL(url)
	c := redis.NewClient(o)
	defer c.Close()
	m, err := c.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return int(m[channel])
}

func suite(url string) brokertest.Suite {
	return brokertest.Suite{
		Make: func(t *testing.T, ns string) switchboard.Broker { return newBroker(t, url, ns) },
		Subscribers: func(t *testing.T, ns, channel string) int {
			return numsub(t, url, ns+channel)
		},
	}
}
