package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load parses args (without the program or command name) and the environment
// (env is a lookup function, os.LookupEnv in production), reads the YAML file
// named by --config or SWITCHBOARD_CONFIG, and returns the merged, defaulted
// and validated configuration. Precedence: flag > environment > file > default.
//
// -h/--help writes the usage to usage and returns flag.ErrHelp.
func Load(args []string, env func(string) (string, bool), usage io.Writer) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	if usage == nil {
		usage = io.Discard
	}

	fromFlags, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		writeUsage(usage)
		return nil, flag.ErrHelp
	}
	if err != nil {
		return nil, err
	}

	c := &Config{}
	var errs []error
	for _, s := range specs {
		if s.def != "" {
			errs = append(errs, s.set(c, []string{s.def}, "default for --"+s.name))
		}
	}

	// Which file? A flag beats the environment, as for every other setting.
	path := ""
	if v, ok := fromFlags[configFlag]; ok {
		path = v[len(v)-1]
	} else if v, ok := env(envPrefix + "CONFIG"); ok {
		path = v
	}
	if path != "" {
		c.ConfigFile = path
		errs = append(errs, applyFile(c, path))
	}

	for _, s := range specs {
		if s.name == configFlag {
			continue
		}
		v, ok := env(s.env())
		if !ok || strings.TrimSpace(v) == "" { // empty variables count as unset
			continue
		}
		vals := []string{v}
		if s.kind == kRepeat || s.kind == kCSV {
			vals = splitCSV(v)
		}
		errs = append(errs, s.set(c, vals, s.env()))
	}

	for _, s := range specs {
		vals, ok := fromFlags[s.name]
		if !ok || s.name == configFlag {
			continue
		}
		switch s.kind {
		case kRepeat: // every occurrence is one value
		case kCSV:
			var all []string
			for _, v := range vals {
				all = append(all, splitCSV(v)...)
			}
			vals = all
		default: // last occurrence wins
			vals = vals[len(vals)-1:]
		}
		errs = append(errs, s.set(c, vals, "--"+s.name))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	if c.Auth == "" {
		c.Auth = defaultAuth(c.Addr)
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// collector records the raw text of every occurrence of one flag; parsing
// happens later so that all sources report errors the same way.
type collector struct {
	name string
	seen map[string][]string
}

func (v *collector) String() string { return "" }
func (v *collector) Set(s string) error {
	v.seen[v.name] = append(v.seen[v.name], s)
	return nil
}

// boolCollector lets a bool flag stand alone (--webhook-room-events means
// --webhook-room-events=true).
type boolCollector struct{ *collector }

func (boolCollector) IsBoolFlag() bool { return true }

func parseFlags(args []string) (map[string][]string, error) {
	seen := map[string][]string{}
	fs := flag.NewFlagSet("switchboard serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Load reports errors and writes usage itself
	fs.Usage = func() {}
	for _, s := range specs {
		var v flag.Value = &collector{name: s.name, seen: seen}
		if s.kind == kBool {
			v = boolCollector{v.(*collector)}
		}
		fs.Var(v, s.name, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: flags take the form --name=value (see --help)", fs.Arg(0))
	}
	return seen, nil
}

// applyFile sets c from the YAML file at path. Keys are flag names; unknown
// keys are an error.
func applyFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: invalid YAML: %w", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		return nil
	}
	top := deref(doc.Content[0])
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil
	}
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: must be a mapping of flag names to values (e.g. max-conns: 5000)", path)
	}
	var errs []error
	seen := map[string]bool{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := deref(top.Content[i]), deref(top.Content[i+1])
		where := fmt.Sprintf("%s:%d: key %q", path, k.Line, k.Value)
		s, ok := lookupSpec(k.Value)
		if !ok || k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("%s: unknown key %q (keys are flag names, see --help)", path, k.Value))
			continue
		}
		if s.name == configFlag {
			errs = append(errs, fmt.Errorf("%s: key %q cannot be set inside the config file", path, k.Value))
			continue
		}
		if seen[s.name] {
			errs = append(errs, fmt.Errorf("%s: duplicate key", where))
			continue
		}
		seen[s.name] = true
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
			continue // "key:" with no value leaves the setting alone
		}
		vals, err := nodeValues(s, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", where, err))
			continue
		}
		errs = append(errs, s.set(c, vals, where))
	}
	return errors.Join(errs...)
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func nodeValues(s spec, n *yaml.Node) ([]string, error) {
	list := s.kind == kRepeat || s.kind == kCSV
	switch {
	case n.Kind == yaml.ScalarNode && list:
		return splitCSV(n.Value), nil
	case n.Kind == yaml.ScalarNode:
		return []string{n.Value}, nil
	case n.Kind == yaml.SequenceNode && list:
		out := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			item = deref(item)
			if item.Kind != yaml.ScalarNode {
				return nil, errors.New("must be a list of strings")
			}
			out = append(out, item.Value)
		}
		return out, nil
	case list:
		return nil, errors.New("must be a string or a list of strings")
	}
	return nil, fmt.Errorf("must be a single %s value, not a list or mapping", s.kind.placeholder())
}

// set parses vals into the field of c described by s. where names the
// source for error messages. Values of secret settings never appear in errors
// (they are plain strings, which cannot fail to parse).
func (s spec) set(c *Config, vals []string, where string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = vals[0]
	case *[]string:
		*p = append([]string(nil), vals...)
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(vals[0]))
		if err != nil {
			return fmt.Errorf("%s: invalid integer %q", where, vals[0])
		}
		*p = n
	case *float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(vals[0]), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%s: invalid number %q", where, vals[0])
		}
		*p = f
	case *bool:
		b, err := strconv.ParseBool(strings.TrimSpace(vals[0]))
		if err != nil {
			return fmt.Errorf("%s: invalid boolean %q (use true or false)", where, vals[0])
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(vals[0]))
		if err != nil {
			return fmt.Errorf("%s: invalid duration %q (use a Go duration such as 30s, 1m30s or 500ms)", where, vals[0])
		}
		*p = d
	default:
		panic("config: unsupported field type for " + s.name)
	}
	return nil
}

// splitCSV splits a comma-separated list, trimming spaces and dropping empty
// items (so trailing commas are harmless).
// splitCSV splits a comma-separated value. An empty value is an empty
// list; an empty entry inside one ("a,,b", "a,") is kept, so that
// validation reports it rather than a typo passing unnoticed.
func splitCSV(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		out = append(out, strings.TrimSpace(item))
	}
	return out
}

func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "switchboard"
	}
	var b [3]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return host + "-" + hex.EncodeToString(b[:])
}
