package server

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/server/config"
)

func TestPprofOnLoopback(t *testing.T) {
	skipUnderRace(t)
	srv, addr, cancel, done := runInProcess(t, "--addr=127.0.0.1:0", "--pprof=127.0.0.1:0")
	paddr := srv.PprofAddr()
	if paddr == nil || paddr.String() == addr.String() {
		t.Fatalf("pprof address %v (main %v): want its own listener", paddr, addr)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + paddr.String() + "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ on the pprof listener: %d", code)
	}
	if code, _ := get("http://" + addr.String() + "/debug/pprof/"); code == 200 {
		t.Error("the public listener serves /debug/pprof/")
	}
	client.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", paddr.String(), time.Second); err == nil {
		t.Error("pprof listener still open after shutdown")
	}
}

func TestPprofRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060"} {
		_, err := config.Load([]string{"--pprof=" + addr}, func(string) (string, bool) { return "", false }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--pprof refuses "+addr) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("--pprof=%s: %v", addr, err)
		}
	}
	// Defence in depth: the listener itself is checked after binding.
	if _, _, err := startPprof("0.0.0.0:0", slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil ||
		!strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("startPprof on 0.0.0.0: %v", err)
	}
}
