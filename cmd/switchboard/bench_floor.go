package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboardhq/switchboard/internal/floor"
)

// What a bench run measures (--target).
const (
	targetServer = "switchboard"
	targetFloor  = "floor"
	targetBoth   = "both"
)

// floorServe is the hidden "bench floor-serve" process: the bare
// broadcast loop the bench compares the server with.
func floorServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench floor-serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// As the server does: no TCP keepalive, which costs four setsockopt
	// calls per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv, err := floor.Listen(ln)
	if err != nil {
		_ = ln.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
