package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The example file holds every setting, and loads into exactly the
// defaults.
func TestExampleLoadsIntoDefaults(t *testing.T) {
	var out bytes.Buffer
	if err := WriteExample(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, s := range specs {
		if s.name != configFlag && !strings.Contains(text, "\n"+s.name+":") && !strings.Contains(text, "\n# "+s.name+":") {
			t.Errorf("the example lacks %s", s.name)
		}
		if s.secret && strings.Contains(text, "\n"+s.name+":") {
			t.Errorf("the example sets the secret %s", s.name)
		}
	}
	path := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := Check(path)
	if err != nil {
		t.Fatalf("the example does not load: %v\n%s", err, text)
	}
	plain, err := Load(nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	fromFile.ConfigFile, fromFile.NodeID, plain.NodeID = "", "", ""
	if !reflect.DeepEqual(fromFile, plain) {
		t.Fatalf("the example loads into\n%#v\nnot the defaults\n%#v", fromFile, plain)
	}
}

func TestCheckReportsProblems(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("max-conns: many\nno-such-key: 1\nping-interval: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Check(bad)
	if err == nil {
		t.Fatal("a bad file passed")
	}
	for _, want := range []string{"bad.yaml:1", "max-conns", `unknown key "no-such-key"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, err := Check(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("a missing file: %v", err)
	}
}
