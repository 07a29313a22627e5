package web

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// The vendored charting library is embedded exactly as VERSION records
// it: a changed file must come with a new VERSION.
func TestVendoredUPlotMatchesVersion(t *testing.T) {
	version, err := admin.ReadFile("admin/vendor/uplot/VERSION")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(version), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			continue
		}
		b, err := admin.ReadFile("admin/vendor/uplot/" + name)
		if err != nil {
			t.Fatalf("%s is listed in VERSION but not embedded: %v", name, err)
		}
		if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s does not match its SHA-256 in VERSION", name)
		}
		checked++
	}
	if checked != 3 {
		t.Errorf("VERSION lists %d files, want 3 (the script, the stylesheet, the licence)", checked)
	}
	if !strings.Contains(string(version), "uplot@1.6.32") {
		t.Errorf("VERSION does not name the package version: %s", version)
	}
}
