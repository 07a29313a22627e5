//go:build race

package server

// raceEnabled: Server.Run serves through nbio, which marks its own code
// go:norace and hands sockets between its goroutines through the poller,
// where the race detector cannot see the synchronisation; it then reports
// races inside nbio. Tests of Run skip under -race and run in the test
// script's second pass, without it.
const raceEnabled = true
