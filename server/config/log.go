package config

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

const redacted = "[redacted]"

// LogValue lists every setting under its flag name, for logging at start-up.
// The JWT secret and API keys are replaced by a marker, passwords in broker
// URLs are masked, and an inline PEM key is summarised.
func (c Config) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(specs))
	for _, s := range specs {
		var a slog.Attr
		switch p := s.field(&c).(type) {
		case *string:
			a = slog.String(s.name, logString(s, *p))
		case *[]string:
			if s.secret {
				a = slog.String(s.name, redactList(*p))
			} else {
				a = slog.Any(s.name, append([]string{}, *p...))
			}
		case *int:
			a = slog.Int(s.name, *p)
		case *float64:
			a = slog.Float64(s.name, *p)
		case *bool:
			a = slog.Bool(s.name, *p)
		case *time.Duration:
			a = slog.String(s.name, p.String()) // "25s", not nanoseconds
		}
		attrs = append(attrs, a)
	}
	return slog.GroupValue(attrs...)
}

func logString(s spec, v string) string {
	switch {
	case v == "":
		return ""
	case s.secret:
		return redacted
	case s.name == "redis-url" || s.name == "nats-url" || s.name == "webhook-url":
		return redactURLs(v)
	case strings.Contains(v, "-----BEGIN"):
		return fmt.Sprintf("(inline PEM, %d bytes)", len(v))
	}
	return v
}

func redactList(keys []string) string {
	switch len(keys) {
	case 0:
		return ""
	case 1:
		return "1 key " + redacted
	}
	return fmt.Sprintf("%d keys %s", len(keys), redacted)
}

// redactURLs masks credentials in a URL or comma-separated list of URLs:
// passwords, and a user name standing alone, which NATS takes as a token.
// A URL without a scheme (host:4222, which the NATS client accepts) is
// read as one; anything unreadable holding an @ is masked whole.
func redactURLs(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		raw, bare := strings.TrimSpace(p), false
		if !strings.Contains(raw, "://") {
			raw, bare = "//"+raw, true
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil || u.User == nil:
			if strings.Contains(p, "@") {
				parts[i] = redacted
			}
		default:
			if _, ok := u.User.Password(); !ok {
				u.User = url.User("xxxxx")
			}
			parts[i] = u.Redacted()
			if bare {
				parts[i] = strings.TrimPrefix(parts[i], "//")
			}
		}
	}
	return strings.Join(parts, ",")
}

// String renders the configuration as name=value pairs, with the same
// redaction as LogValue, so that printing a Config never leaks a secret.
func (c Config) String() string {
	var b strings.Builder
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%v", a.Key, a.Value)
	}
	return b.String()
}

// GoString makes %#v as safe as %v.
func (c Config) GoString() string { return "config.Config{" + c.String() + "}" }

func writeUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: switchboard [serve] [flags]

Every flag can also be set with its environment variable, or as a key in the
YAML file given with --config (keys are flag names, e.g. "max-conns: 5000" or
"api-key: [a, b]"). Precedence: flag > environment > file > default.
Durations use Go syntax (500ms, 30s, 1m30s).

Flags:
`)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range specs {
		def := s.shownDefault()
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(tw, "  --%s %s\t%s\n", s.name, s.kind.placeholder(), s.usage)
		fmt.Fprintf(tw, "  \tenv %s, default: %s\n", s.env(), def)
	}
	tw.Flush()
}
