//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPeerVanishesWithoutFIN: a client whose network disappears can never
// send FIN or RST; the server must notice by silence alone (no frame for
// ping_interval + pong_timeout), close it with 4000 ping_timeout and
// announce its leave.
//
// The ghost client runs in a network namespace behind a veth pair and
// answers pings, so it would stay connected for ever; the test then takes
// the namespace's end of the veth down. The host end keeps its address (the
// server listens there), loses carrier, and drops whatever the server sends.
func TestPeerVanishesWithoutFIN(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and a veth pair")
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs ip from iproute2: not on PATH")
	}
	if out, err := exec.Command(ipBin, "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("ip netns unavailable: %v: %s", err, out)
	}
	const (
		secret       = "testsecret"
		pingInterval = time.Second
		pongTimeout  = time.Second
	)
	ctx := testContext(t, 90*time.Second)
	link := newVethNamespace(t, ctx, ipBin)

	srv := startServer(t, ctx, "--addr", net.JoinHostPort(link.hostIP, "0"),
		"--auth", "jwt", "--jwt-secret", secret,
		"--ping-interval", pingInterval.String(), "--pong-timeout", pongTimeout.String())
	base := "ws://" + srv.Addr + "/ws?token="

	watcher, err := dialClient(ctx, base+token(t, ctx, "watcher", secret))
	if err != nil {
		t.Fatalf("watcher: %v", err)
	}
	t.Cleanup(watcher.close)
	if _, err := watcher.request(ctx, map[string]any{"type": "join", "id": "w", "room": "r"}); err != nil {
		t.Fatalf("watcher join: %v", err)
	}

	ghost := startGhost(t, ipBin, link.ns, base+token(t, ctx, "ghost", secret), "r")
	if !ghost.out.waitLine(ctx, "joined") {
		t.Fatalf("ghost did not join (%v); its output:\n%s", ctx.Err(), ghost.out.String())
	}
	if _, err := watcher.expect(ctx, "ghost's join", func(f frame) bool {
		return f.typ() == "join" && f.str("user") == "ghost" && f.str("room") == "r"
	}); err != nil {
		t.Fatal(err)
	}
	// Alive on its own merits: three pings answered takes longer than
	// ping_interval + pong_timeout.
	if !ghost.out.waitLine(ctx, "pong 3") {
		t.Fatalf("ghost did not answer 3 pings (%v); its output:\n%s", ctx.Err(), ghost.out.String())
	}

	// The server hears from the ghost after syncAt and never again once the
	// link is cut, so nothing may close it before syncAt + the silence bound.
	syncAt := time.Now()
	if _, err := io.WriteString(ghost.stdin, "sync\n"); err != nil {
		t.Fatal(err)
	}
	if !ghost.out.waitLine(ctx, "synced") {
		t.Fatalf("ghost did not sync (%v); its output:\n%s", ctx.Err(), ghost.out.String())
	}
	cutAt := time.Now()
	if out, err := exec.CommandContext(ctx, ipBin, "-n", link.ns, "link", "set", link.nsIf, "down").CombinedOutput(); err != nil {
		t.Fatalf("cut the link: %v: %s", err, out)
	}

	leaveCtx, cancel := context.WithDeadline(ctx, cutAt.Add(10*time.Second))
	defer cancel()
	leave, err := watcher.expect(leaveCtx, "ghost's leave within 10s of the cut", func(f frame) bool {
		return f.typ() == "leave" && f.str("user") == "ghost"
	})
	if err != nil {
		t.Fatalf("%v; server output:\n%s", err, srv.output.String())
	}
	want := map[string]any{"type": "leave", "user": "ghost", "room": "r"}
	if !reflect.DeepEqual(leave.Msg, want) {
		t.Errorf("leave frame %s, want %v", leave.Raw, want)
	}
	silence := pingInterval + pongTimeout
	t.Logf("leave %v after the cut, %v after the ghost's last frame was requested (bound %v)",
		leave.At.Sub(cutAt).Round(time.Millisecond), leave.At.Sub(syncAt).Round(time.Millisecond), silence)
	if got := leave.At.Sub(syncAt); got < silence {
		t.Errorf("ghost's leave came %v after it last spoke, before ping_interval+pong_timeout (%v)", got, silence)
	}

	closed, ok := srv.output.waitEntry(ctx, func(e map[string]any) bool {
		return e["msg"] == "connection closed" && e["user_id"] == "ghost"
	})
	if !ok {
		t.Fatalf("server never logged ghost's connection closed (%v)", ctx.Err())
	}
	if code, _ := closed["code"].(float64); code != 4000 || closed["reason"] != "ping_timeout" {
		t.Errorf("server closed ghost with %v %v, want 4000 ping_timeout", closed["code"], closed["reason"])
	}
	if out := ghost.out.String(); strings.Contains(out, "closed") || strings.Contains(out, "error") {
		t.Errorf("the ghost heard from the server after the cut, so the link was not really cut:\n%s", out)
	}
}

type vethNamespace struct {
	ns, hostIf, nsIf string
	hostIP, nsIP     string
}

var netnsSeq atomic.Int32

// newVethNamespace creates a network namespace and a veth pair into it, with
// link-local addresses (169.254.213.x/30, never routed off this pair), and
// removes both when the test ends, failed or not.
func newVethNamespace(t *testing.T, ctx context.Context, ipBin string) *vethNamespace {
	t.Helper()
	pid, n := os.Getpid(), int(netnsSeq.Add(1))
	block := ((pid + n) % 64) * 4
	v := &vethNamespace{
		ns:     fmt.Sprintf("sbtest-%d-%d", pid, n),
		hostIf: fmt.Sprintf("sbh%d-%d", pid%10000000, n%100), // at most 15 bytes
		nsIf:   fmt.Sprintf("sbn%d-%d", pid%10000000, n%100),
		hostIP: fmt.Sprintf("169.254.213.%d", block+1),
		nsIP:   fmt.Sprintf("169.254.213.%d", block+2),
	}
	ip := func(ctx context.Context, args ...string) error {
		out, err := exec.CommandContext(ctx, ipBin, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := ip(ctx, "netns", "add", v.ns); err != nil {
		t.Skipf("cannot create a network namespace here: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		// Deleting one end removes the pair at once; the namespace itself
		// is released when its last process (the ghost, killed by an
		// earlier cleanup) is gone.
		if err := ip(cctx, "link", "del", v.hostIf); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			t.Errorf("cleanup: %v", err)
		}
		if err := ip(cctx, "netns", "del", v.ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := ip(ctx, "link", "add", v.hostIf, "type", "veth", "peer", "name", v.nsIf, "netns", v.ns); err != nil {
		t.Skipf("cannot create a veth pair here: %v", err)
	}
	for _, args := range [][]string{
		{"addr", "add", v.hostIP + "/30", "dev", v.hostIf},
		{"link", "set", v.hostIf, "up"},
		{"-n", v.ns, "addr", "add", v.nsIP + "/30", "dev", v.nsIf},
		{"-n", v.ns, "link", "set", "lo", "up"},
		{"-n", v.ns, "link", "set", v.nsIf, "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

type ghostProc struct {
	stdin io.WriteCloser
	out   *logBuffer
}

// startGhost runs this test binary as the ghost client (see runGhost)
// inside the namespace; it is killed when the test ends, before the
// namespace is removed.
func startGhost(t *testing.T, ipBin, ns, url, room string) *ghostProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ipBin, "netns", "exec", ns, exe)
	cmd.Env = append(os.Environ(), roleEnv+"=ghost", urlEnv+"="+url, roomEnv+"="+room)
	g := &ghostProc{out: newLogBuffer()}
	if g.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = g.out
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ghost: %v", err)
	}
	done := captureLines(stdout, g.out)
	t.Cleanup(func() {
		killProcessGroup(cmd)
		g.stdin.Close()
		<-done
		err := cmd.Wait()
		if t.Failed() {
			t.Logf("ghost exited (%v); its output:\n%s", err, g.out.String())
		}
	})
	return g
}
