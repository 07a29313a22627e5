// Command switchboard runs a Switchboard node (serve, the default), mints
// development tokens (token) and measures a running build (bench).
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
  switchboard token --user ID [--ttl 1h] [--rooms 'chat:*,news']
                                mint a development JWT with --jwt-secret / SWITCHBOARD_JWT_SECRET
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

func serve(args []string, stderr io.Writer) error {
	cfg, err := config.Load(args, os.LookupEnv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	log.Info("starting", "config", cfg)
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return srv.Run(ctx, nil)
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
	secret := fs.String("jwt-secret", os.Getenv("SWITCHBOARD_JWT_SECRET"), "HS256 secret (env SWITCHBOARD_JWT_SECRET)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("--user is required")
	}
	var claim []string
	if *rooms != "" {
		claim = strings.Split(*rooms, ",")
	}
	tok, err := server.MintToken(*secret, *user, *ttl, claim)
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintln(stdout, tok)
	return nil
}
