package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The token command's usage, printed on -h or any mistyped flag, never
// shows the secret held in the environment.
func TestTokenUsageHidesTheSecret(t *testing.T) {
	t.Setenv("SWITCHBOARD_JWT_SECRET", "topsecretvalue-from-env")
	for _, args := range [][]string{{"-h"}, {"--user", "a", "--bogus"}} {
		var out, errOut bytes.Buffer
		_ = token(args, &out, &errOut)
		if s := out.String() + errOut.String(); strings.Contains(s, "topsecretvalue") {
			t.Fatalf("token %v printed the secret:\n%s", args, s)
		}
	}
	var out, errOut bytes.Buffer
	if err := token([]string{"--user", "a"}, &out, &errOut); err != nil || strings.Count(out.String(), ".") != 2 {
		t.Fatalf("token from the environment's secret: %q %v", out.String(), err)
	}
}

// config init prints a file that config check accepts; a broken file is
// refused with exit status 1 and its problems.
func TestConfigInitAndCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "init"}, &out, &errOut); code != 0 {
		t.Fatalf("config init: %d %s", code, errOut.String())
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"config", "check", good}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "is valid") {
		t.Fatalf("config check of the example: %d %q %s", code, out.String(), errOut.String())
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("broker: kafka\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"config", "check", bad}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), `--broker must be`) {
		t.Fatalf("config check of a bad file: %d %s", code, errOut.String())
	}
	if code := run([]string{"config"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "usage: switchboard config") {
		t.Fatalf("config without a subcommand: %d %s", code, errOut.String())
	}
}

// health exits 0 for a node that answers 200 and 1 otherwise.
func TestHealth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			http.Error(w, "broker unreachable", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var out, errOut bytes.Buffer
	if code := run([]string{"health", "--addr", addr}, &out, &errOut); code != 0 {
		t.Fatalf("health: %d %s", code, errOut.String())
	}
	if code := run([]string{"health", "--addr", addr, "--ready"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "503") {
		t.Fatalf("health --ready of a node not ready: %d %s", code, errOut.String())
	}
	srv.Close()
	if code := run([]string{"health", "--addr", addr, "--timeout", "1s"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no answer") {
		t.Fatalf("health of a stopped node: %d %s", code, errOut.String())
	}
}
