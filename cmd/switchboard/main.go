// Command switchboard runs a Switchboard node (serve, the default), mints
// development tokens (token) and measures a running build (bench).
//
// It is the top of the import graph: it wires the server and the bench's
// load generator, and no package imports it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboardhq/switchboard/server"
	"github.com/switchboardhq/switchboard/server/config"
)

const usage = `switchboard: a WebSocket connection manager and real-time server.

Usage:
  switchboard [serve] [flags]   run a node (default); see 'switchboard serve --help'
  switchboard token --user ID [--ttl 1h] [--rooms 'chat:*,news'] [--issuer I] [--audience A]
                                mint a development JWT with --jwt-secret / SWITCHBOARD_JWT_SECRET
  switchboard config init       print a commented YAML file with every setting and its default
  switchboard config check FILE validate a YAML file the way serve would (--config FILE)
  switchboard health [--addr host:port] [--ready]
                                exit 0 when a running node answers /healthz (/readyz)
  switchboard bench idle|fanout [flags]
                                measure memory per connection, fan-out and latency
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args, stderr)
	case "token":
		err = token(args, stdout, stderr)
	case "bench":
		err = bench(args, stdout, stderr)
	case "config":
		err = configCmd(args, stdout)
	case "health":
		err = health(args, stdout, stderr)
	case "help":
		_, _ = io.WriteString(stdout, usage)
		return 0
	default:
		_, _ = fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "switchboard %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// configCmd writes an example file (init) or validates one (check).
func configCmd(args []string, stdout io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "init":
		return config.WriteExample(stdout)
	case len(args) == 2 && args[0] == "check":
		cfg, err := config.Check(args[1])
		if err != nil {
			return fmt.Errorf("%s is not valid:\n%w", args[1], err)
		}
		_, err = fmt.Fprintf(stdout, "%s is valid: broker %s, listening on %s\n", args[1], cfg.Broker, cfg.Addr)
		return err
	}
	return errors.New("usage: switchboard config init | switchboard config check FILE")
}

func serve(args []string, stderr io.Writer) error {
	cfg, err := config.Load(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	// SIGHUP is caught from before start-up until the process exits, so it
	// never takes its default action (termination), not even mid-drain.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	log := newLogger(cfg, stderr)
	log.Info("starting", "config", cfg)
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go reloadOnSIGHUP(hup, srv)
	return srv.Run(ctx, nil)
}

// reloadOnSIGHUP re-reads the token verification keys (--jwt-public-key or
// --jwks-file) on every SIGHUP for the life of the process. The server logs
// the outcome; a failed reload keeps the keys in use.
func reloadOnSIGHUP(hup <-chan os.Signal, srv *server.Server) {
	for range hup {
		_ = srv.ReloadKeys() // logged by ReloadKeys
	}
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func token(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "user id (the token's sub)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	rooms := fs.String("rooms", "", "comma-separated rooms claim: exact names or prefix* patterns (default: any room)")
	issuer := fs.String("issuer", "", "iss claim (match the server's --jwt-issuer)")
	audience := fs.String("audience", "", "aud claim (match the server's --jwt-audience)")
	// No default from the environment: flag usage prints defaults, and a
	// secret must never reach a terminal or a CI log that way.
	secret := fs.String("jwt-secret", "", "HS256 secret (default: env SWITCHBOARD_JWT_SECRET)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		*secret = os.Getenv("SWITCHBOARD_JWT_SECRET")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: flags take the form --name=value", fs.Arg(0))
	}
	if *user == "" {
		return errors.New("--user is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl must be positive, got %s", *ttl)
	}
	claim, err := roomsFlag(*rooms)
	if err != nil {
		return err
	}
	tok, err := server.MintHS256(*secret, server.TokenOptions{
		User: *user, TTL: *ttl, Rooms: claim, Issuer: *issuer, Audience: *audience,
	})
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintln(stdout, tok)
	return nil
}

// roomsFlag splits --rooms and checks every entry with the rules servers
// apply to the claim. An empty flag leaves the claim out (any room).
func roomsFlag(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []string
	for i, r := range strings.Split(v, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			return nil, fmt.Errorf("--rooms entry %d is empty (stray comma?)", i+1)
		}
		if err := server.ValidRoomPattern(r); err != nil {
			return nil, fmt.Errorf("--rooms entry %q: %v; entries are room names of 1-128 bytes of [A-Za-z0-9_.:@/-], or such a prefix followed by one * at the end", r, err)
		}
		out = append(out, r)
	}
	return out, nil
}
