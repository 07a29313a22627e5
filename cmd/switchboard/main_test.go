package main

import (
	"bytes"
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
