package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// startNginx runs Debian's nginx with deploy/nginx.conf, its upstream
// pointed at nodes and its listener at a free loopback port, and returns
// that address.
func startNginx(t *testing.T, ctx context.Context, nodes ...*server) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/nginx"); err != nil {
			t.Fatalf("nginx not found (scripts/test.sh installs nginx-light): %v", err)
		}
		bin = "/usr/sbin/nginx"
	}
	site, err := os.ReadFile("../deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	var upstream strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&upstream, "    server %s max_fails=3 fail_timeout=10s;\n", n.Addr)
	}
	conf := regexp.MustCompile(`(?m)^    server 10\.0\.0\.\d+:8080[^\n]*\n`).ReplaceAllString(string(site), "")
	conf = strings.Replace(conf, "    least_conn;\n", "    least_conn;\n"+upstream.String(), 1)
	port := freeLocalPort(t)
	conf = strings.Replace(conf, "listen 80;", "listen 127.0.0.1:"+strconv.Itoa(port)+";", 1)
	if strings.Contains(conf, "10.0.0.") || !strings.Contains(conf, nodes[0].Addr) {
		t.Fatalf("deploy/nginx.conf changed shape; the test cannot point it at the nodes:\n%s", conf)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "switchboard.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/switchboard.conf;
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, bin, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killProcessGroup(cmd); _ = cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return addr
		}
		select {
		case <-ctx.Done():
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not listen on %s: %v\n%s", addr, err, log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestNginxInFront runs three nodes on one Redis behind Debian's nginx with
// deploy/nginx.conf: WebSocket clients through nginx land on different
// nodes with no stickiness, and room messages, direct messages, backend
// API publishes and presence span them all. An event-stream client works
// through the same nginx, its POSTs reaching whichever node (and, sent to
// each node directly, every one of them).
func TestNginxInFront(t *testing.T) {
	needBroker(t, "redis")
	ctx := testContext(t, 90*time.Second)
	cluster := fmt.Sprintf("c%x", rand.Uint64())
	var nodes []*server
	for i, id := range []string{"a", "b", "c"} {
		args := append(clusterArgs("redis", cluster, 2+i), "--node-id="+id,
			"--handshake-rate=2000", "--handshake-burst=5000")
		nodes = append(nodes, startServer(t, ctx, args...))
	}
	front := startNginx(t, ctx, nodes...)

	const room = "lobby"
	users := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	var clients []*goClient
	for _, u := range users {
		clients = append(clients, joinedGo(t, ctx, &server{Addr: front}, u, room))
	}
	// least_conn spreads them: every node holds some.
	for _, n := range nodes {
		if got, body := statsNodes(t, ctx, n); got != 3 {
			t.Fatalf("%s sees %d nodes: %v", n.Addr, got, body)
		}
		if c := nodeConnections(t, ctx, n); c == 0 {
			t.Fatalf("node %s got none of the %d connections through nginx", n.Addr, len(users))
		}
	}
	waitAPIUsers(t, ctx, "/api/presence?room="+room, users, &server{Addr: front})

	if err := clients[0].Publish(ctx, room, "hello"); err != nil {
		t.Fatal(err)
	}
	if st, body := apiCall(t, ctx, "POST", "http://"+front+"/api/publish", "k", `{"room":"lobby","data":"from the backend"}`); st != 200 {
		t.Fatalf("API publish through nginx: %d %v", st, body)
	}
	// Two senders on different nodes: each message arrives, in either order.
	for i, c := range clients {
		for _, want := range []string{"hello", "from the backend"} {
			if _, err := c.waitMsg(ctx, fmt.Sprintf("message %q", want), func(m client.Message) bool {
				return m.Room == room && dataIs(m, want)
			}); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
		}
	}
	if err := clients[1].Send(ctx, "u5", "dm"); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[5].waitMsg(ctx, "the direct message", func(m client.Message) bool {
		return m.To == "u5" && dataIs(m, "dm")
	}); err != nil {
		t.Fatal(err)
	}

	// The event-stream fallback through nginx.
	base := "http://" + front
	es := openStream(t, ctx, base, "user=usse&room="+room)
	es.expect(ctx, "the join ack", func(e sseEvent) bool { return e.frame["ref"] == "sse-join-"+room })
	waitAPIUsers(t, ctx, "/api/presence?room="+room, append(users, "usse"), &server{Addr: front})
	if err := clients[2].Publish(ctx, room, "to the stream"); err != nil {
		t.Fatal(err)
	}
	es.expect(ctx, "a WebSocket client's message", func(e sseEvent) bool { return e.frame["data"] == "to the stream" })
	// Its requests through nginx, then to each node straight: those that
	// do not hold the stream forward them over Redis.
	targets := []string{base}
	for _, n := range nodes {
		targets = append(targets, "http://"+n.Addr)
	}
	for i, target := range targets {
		data := fmt.Sprintf("from the stream %d", i)
		body := fmt.Sprintf(`{"type":"publish","id":"e%d","room":%q,"data":%q}`, i, room, data)
		if st := es.post(ctx, target, body); st != 204 && st != 202 {
			t.Fatalf("POST to %s: %d", target, st)
		}
		es.expect(ctx, "the ack of "+data, func(e sseEvent) bool { return e.frame["ref"] == fmt.Sprintf("e%d", i) })
		for j, c := range clients {
			if _, err := c.waitMsg(ctx, data, func(m client.Message) bool { return m.Room == room && dataIs(m, data) }); err != nil {
				t.Fatalf("client %d: %v", j, err)
			}
		}
	}
}

// nodeConnections is the node's own connection count: the first entry of
// the nodes its /api/stats lists is itself.
func nodeConnections(t *testing.T, ctx context.Context, n *server) int {
	t.Helper()
	_, body := statsNodes(t, ctx, n)
	list, _ := body["nodes"].([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		if c, ok := m["connections"].(float64); ok {
			return int(c) // this node comes first
		}
	}
	t.Fatalf("no nodes in %v", body)
	return 0
}
