package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// The test binary runs as a helper process when roleEnv is set (TestMain
// checks it before any test runs).
const (
	roleEnv = "SWITCHBOARD_E2E_ROLE"
	urlEnv  = "SWITCHBOARD_E2E_URL"
	roomEnv = "SWITCHBOARD_E2E_ROOM"
)

func runRole(role string) int {
	switch role {
	case "ghost":
		return runGhost(os.Getenv(urlEnv), os.Getenv(roomEnv))
	}
	fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
	return 2
}

// runGhost is a well-behaved client: it connects, joins room, answers every
// server ping, and reports on stdout, one line each: "joined", "pong N"
// after answering the Nth ping, "synced" once the server has answered a
// client ping requested with the stdin line "sync" (so the server has heard
// from it after that moment), "closed ..." if the connection ends. It exits
// when stdin closes (its test is gone) or after two minutes at most.
func runGhost(url, room string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	c, err := dialClient(ctx, url)
	if err != nil {
		say("error: %v", err)
		return 1
	}
	defer c.close()
	c.mu.Lock()
	c.onPong = func(n int) { say("pong %d", n) }
	c.mu.Unlock()
	if _, err := c.request(ctx, map[string]any{"type": "join", "id": "ghost-join", "room": room}); err != nil {
		say("error: join: %v", err)
		return 1
	}
	say("joined")

	stdin := make(chan string)
	go func() {
		defer close(stdin)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			stdin <- sc.Text()
		}
	}()
	syncing := false
	for {
		select {
		case line, ok := <-stdin:
			if !ok {
				return 0
			}
			if line == "sync" {
				syncing = true
				if err := c.send(ctx, map[string]any{"type": "ping"}); err != nil {
					say("error: ping: %v", err)
				}
			}
		case f, ok := <-c.frames:
			if !ok {
				say("closed: %v", c.err)
				<-ctx.Done()
				return 0
			}
			if syncing && f.typ() == "pong" {
				syncing = false
				say("synced")
			}
		case <-ctx.Done():
			return 1
		}
	}
}
