package config

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// WriteExample writes a YAML configuration file holding every setting with
// its default and a comment saying what it does and which environment
// variable sets it too ("switchboard config init"). Settings whose default
// is computed at start (the node id, the authentication mode), secrets and
// lists are left commented out, so the file loads into the same defaults
// as no file at all.
func WriteExample(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# Switchboard configuration. Keys are the flag names of\n")
	b.WriteString("# 'switchboard serve --help'; a flag or environment variable given at\n")
	b.WriteString("# start wins over this file. Check it with 'switchboard config check FILE'.\n")
	b.WriteString("# Keep secrets (jwt-secret, api-key, admin-key, webhook-secret) out of\n")
	b.WriteString("# files that others can read: set them in the environment instead.\n")
	for _, s := range specs {
		if s.name == configFlag {
			continue
		}
		fmt.Fprintf(&b, "\n# %s\n# env %s", s.usage, s.env())
		if d := s.shownDefault(); d != "" {
			fmt.Fprintf(&b, "; default %s", d)
		}
		b.WriteString("\n")
		switch {
		case s.secret || s.def == "":
			fmt.Fprintf(&b, "# %s:\n", s.name)
		default:
			fmt.Fprintf(&b, "%s: %s\n", s.name, yamlScalar(s))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// yamlScalar is s's default as a YAML scalar: numbers, durations and bools
// plain, strings double-quoted (Go's quoting is valid YAML for them).
func yamlScalar(s spec) string {
	if s.kind == kString {
		return strconv.Quote(s.def)
	}
	return s.def
}

// Check loads the YAML file at path alone (no flags, no environment) and
// validates it the way serve would; the error lists every problem, each
// with its line.
func Check(path string) (*Config, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	return Load([]string{"--" + configFlag, path}, nil, nil)
}
