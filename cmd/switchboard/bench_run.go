package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/switchboardhq/switchboard/internal/loadgen"
)

// quietPeriod is how long no frame may arrive before the room counts as
// settled after it filled (join announcements delivered).
const quietPeriod = time.Second

func runIdle(ctx context.Context, s *session, conns int, settle, window time.Duration, compression bool) (*results, error) {
	if conns <= 0 {
		return nil, fmt.Errorf("--conns must be positive")
	}
	flags, clientArgs := s.serverFlagsFor(conns), []string(nil)
	if compression {
		flags, clientArgs = append(flags, "--compression"), []string{"--deflate"}
	}
	if err := s.startServers(ctx, 1, "/healthz", flags...); err != nil {
		return nil, err
	}
	rss0, err := s.rss()
	if err != nil {
		return nil, err
	}
	cpu0, err := s.cpu()
	if err != nil {
		return nil, err
	}
	s.logf("server RSS at start %d KB; connecting %d clients", rss0, conns)
	start := time.Now()
	ws, err := s.spawn(conns, clientArgs...)
	if err != nil {
		return nil, err
	}
	if err := s.waitJoined(ctx, "connect", ws, conns); err != nil {
		return nil, err
	}
	connectTime := time.Since(start)
	cpu1, err := s.cpu()
	if err != nil {
		return nil, err
	}
	if err := s.waitQuiet(ctx, quietPeriod); err != nil {
		return nil, err
	}
	if err := s.sleep(ctx, "settle", settle); err != nil {
		return nil, err
	}
	rss1, err := s.rss()
	if err != nil {
		return nil, err
	}
	s.logf("server RSS %d KB with %d connections; measuring CPU for %s", rss1, conns, window)
	before := total(ws)
	cpuA, err := s.cpu()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := s.sleep(ctx, "window", window); err != nil {
		return nil, err
	}
	cpuB, err := s.cpu()
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(t0)
	after := total(ws)

	r := &results{mode: "idle"}
	r.add("conns", "connections", conns, "")
	r.add("server_rss_start_kb", "server RSS at start", rss0, "KB")
	r.add("server_rss_kb", "server RSS with connections", rss1, "KB")
	r.add("kb_per_conn", "server RSS per connection", round(float64(rss1-rss0)/float64(conns), 2), "KB")
	r.add("connect_s", "connect + join time", round(connectTime.Seconds(), 2), "s")
	r.add("server_cpu_per_conn_us", "server CPU per connect + join", round(float64(cpu1-cpu0)/float64(time.Microsecond)/float64(conns), 1), "us")
	r.add("window_s", "CPU window", round(elapsed.Seconds(), 1), "s")
	r.add("server_cpu_pct", "server CPU, idle", round(100*float64(cpuB-cpuA)/float64(elapsed), 2), "% of a core")
	r.add("pings_in_window", "pings answered in window", after.Pings-before.Pings, "")
	r.add("closed", "connections closed by server", after.Closed, "")
	var err2 error
	if after.Closed > 0 {
		err2 = fmt.Errorf("%d connections were closed during the run (close codes %v)", after.Closed, after.CloseCodes)
	}
	return r, err2
}

type fanoutOpts struct {
	subs, messages, size int
	rate                 float64
	drain                time.Duration
	nodes                int
	broker               string // config.BrokerMemory, BrokerRedis, BrokerNATS or brokerRedisCluster
	redisURL, natsURL    string
	via                  string // loadgen.ViaAPI or ViaWS
	publishers           int    // concurrent HTTP publishers (ViaAPI)
	probes               int    // Go client subscribers besides subs (see runFanout)
	compression          bool   // --compression on the server, subscribers offer it
	realistic            bool   // dashboard-like JSON data
}

// benchAPIKey is the API key of the bench's own servers, which listen on
// loopback only for the length of the run.
const benchAPIKey = "switchboard-bench"

// publisherArgs are the load-client flags of the publisher process.
func (f fanoutOpts) publisherArgs() []string {
	a := []string{"--publish", "--user-prefix", "pub", "--messages", strconv.Itoa(f.messages),
		"--size", strconv.Itoa(f.size), "--rate", strconv.FormatFloat(f.rate, 'g', -1, 64),
		"--publish-via", f.via}
	if f.via == loadgen.ViaAPI {
		a = append(a, "--publishers", strconv.Itoa(f.publishers), "--api-key", benchAPIKey)
	}
	if f.realistic {
		a = append(a, "--realistic")
	}
	return a
}

// subscriberArgs are the load-client flags of the subscriber processes.
func (f fanoutOpts) subscriberArgs() []string {
	if f.compression {
		return []string{"--deflate"}
	}
	return nil
}

// pathText says which publish path a run took.
func (f fanoutOpts) pathText() string {
	if f.via == loadgen.ViaAPI {
		return fmt.Sprintf("POST /api/publish from %d keep-alive HTTP clients", f.publishers)
	}
	return "publish frames on one WebSocket"
}

func (f fanoutOpts) check() error {
	switch {
	case f.subs <= 0 || f.messages <= 0:
		return fmt.Errorf("--subs and --messages must be positive")
	case f.via != loadgen.ViaAPI && f.via != loadgen.ViaWS:
		return fmt.Errorf("--publish-via must be %q or %q, not %q", loadgen.ViaAPI, loadgen.ViaWS, f.via)
	case f.via == loadgen.ViaAPI && f.publishers <= 0:
		return fmt.Errorf("--publishers must be positive")
	case f.probes < 0 || f.probes > 100:
		return fmt.Errorf("--probes must be between 0 and 100")
	}
	return f.checkCluster()
}

func runFanout(ctx context.Context, s *session, f fanoutOpts) (*results, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if f.broker == brokerRedisCluster {
		stop, err := s.startRedisCluster(ctx, &f)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	brokerFlags, err := f.brokerFlags()
	if err != nil {
		return nil, err
	}
	// Every node gets the limits a single node holding everyone would need.
	serverFlags := append(s.serverFlagsFor(f.subs+1+f.probes), brokerFlags...)
	if f.via == loadgen.ViaAPI {
		serverFlags = append(serverFlags, "--api-key="+benchAPIKey)
	}
	if f.compression {
		serverFlags = append(serverFlags, "--compression")
	}
	if err := s.startServers(ctx, f.nodes, f.readyPath(), serverFlags...); err != nil {
		return nil, err
	}
	if f.nodes > 1 {
		s.logf("connecting %d subscribers to %d nodes", f.subs, f.nodes)
	} else {
		s.logf("connecting %d subscribers", f.subs)
	}
	subs, err := s.spawnSubscribers(f.subs, f.subscriberArgs()...)
	if err != nil {
		return nil, err
	}
	if err := s.waitJoined(ctx, "subscribers", subs, f.subs); err != nil {
		return nil, err
	}
	s.opts.users = 0 // the publisher is a user of its own
	pubs, err := s.spawn(1, f.publisherArgs()...)
	if err != nil {
		return nil, err
	}
	if err := s.waitJoined(ctx, "publisher", pubs, 1); err != nil {
		return nil, err
	}
	// The probes: a few subscribers that are Go clients (package client),
	// where the raw load connections, tuned to hold 10k+ connections per
	// process, speak the protocol without a client library. The floor does
	// not speak the protocol far enough for a client.
	if s.target == targetFloor {
		f.probes = 0
	}
	var probes []*worker
	if f.probes > 0 {
		if probes, err = s.spawnOn(f.nodes-1, f.probes, "--client", "--user-prefix", "probe"); err != nil {
			return nil, err
		}
		if err := s.waitJoined(ctx, "Go client probes", probes, f.probes); err != nil {
			return nil, err
		}
	}
	if f.onBroker() {
		want := make([]int, f.nodes)
		for k := range want {
			want[k] = nodeShare(f.subs, f.nodes, k)
		}
		if f.via == loadgen.ViaWS {
			want[0]++ // the publisher's connection
		}
		want[f.nodes-1] += f.probes
		if err := s.waitNodeConns(ctx, want); err != nil {
			return nil, err
		}
	}
	if err := s.waitQuiet(ctx, quietPeriod); err != nil {
		return nil, err
	}
	pub := pubs[0]
	expected := int64(f.subs) * int64(f.messages)
	probeExpected := int64(f.probes) * int64(f.messages)
	base := total(subs)
	cpu0, err := s.nodeCPU()
	if err != nil {
		return nil, err
	}
	out0, outErr := s.bytesOut()
	brokerCPU0, _ := s.brokerCPU(f)
	if err := pub.send("go"); err != nil {
		return nil, err
	}
	s.logf("publishing %d messages of ~%d B at %s to %d subscribers: %s", f.messages, f.size, rateText(f.rate), f.subs, f.pathText())
	var published *loadgen.Status
	lastMsgs, lastChange := int64(-1), time.Now()
	runErr := s.poll(ctx, "deliver", func(t loadgen.Status) (bool, string, error) {
		if published == nil {
			select {
			case st := <-pub.reports:
				published = &st
			default:
			}
		}
		got, probeGot := t.Msgs-base.Msgs, total(probes).Msgs
		if got+probeGot != lastMsgs {
			lastMsgs, lastChange = got+probeGot, time.Now()
		}
		p := fmt.Sprintf("%d/%d delivered", got, expected)
		if f.probes > 0 {
			p += fmt.Sprintf(", %d/%d to Go clients", probeGot, probeExpected)
		}
		done := got >= expected && probeGot >= probeExpected
		if published != nil && !done && time.Since(lastChange) >= f.drain {
			return true, p + fmt.Sprintf("; nothing new for %s, giving up", f.drain), nil
		}
		return done, p, nil
	}, append(subs, pub))
	cpu1, err := s.nodeCPU()
	if err != nil {
		return nil, err
	}
	brokerCPU1, brokerSeen := s.brokerCPU(f)
	out1, outErr1 := s.bytesOut()
	cpuUser, cpuSys, cpuPerNode := cpuSpent(cpu0, cpu1)
	rss, _ := s.rss()
	if runErr != nil && published == nil {
		return nil, runErr
	}
	for _, w := range subs {
		if err := w.send("report"); err != nil {
			return nil, err
		}
	}
	var hist loadgen.HistData
	var minPer, maxPer int64 = -1, 0
	rctx, cancel := context.WithTimeout(ctx, s.opts.timeout)
	defer cancel()
	for _, w := range subs {
		rep, err := w.await(rctx, "report")
		if err != nil {
			return nil, err
		}
		hist.Merge(*rep.Hist)
		if minPer < 0 || rep.MinPerConn < minPer {
			minPer = rep.MinPerConn
		}
		maxPer = max(maxPer, rep.MaxPerConn)
	}
	var probeHist loadgen.HistData
	for _, w := range probes {
		if err := w.send("report"); err != nil {
			return nil, err
		}
		rep, err := w.await(rctx, "report")
		if err != nil {
			return nil, err
		}
		probeHist.Merge(*rep.Hist)
	}
	t, pt := total(subs), total(probes)
	got := t.Msgs - base.Msgs
	// The server delivered to the probes too: they count in the figures
	// per delivery.
	all := got + pt.Msgs
	dur := time.Duration(t.LastRecvNs - published.PubStart)
	cpu := cpuUser + cpuSys
	allNodes := "" // label suffix
	if f.nodes > 1 {
		allNodes = " (all nodes)"
	}

	r := &results{mode: "fanout"}
	if f.onBroker() {
		r.add("nodes", "server nodes", f.nodes, "")
		r.add("broker", "broker", f.broker, "")
	}
	r.add("subs", "subscribers", f.subs, "")
	r.add("messages", "messages published", published.Published, "")
	r.add("size", "data size", f.size, "B")
	r.add("rate", "publish rate", rateText(f.rate), "")
	r.add("publish_via", "publish path", f.pathText(), "")
	r.add("publish_s", "publishing time", round(float64(published.PubEnd-published.PubStart)/1e9, 3), "s")
	r.add("expected", "deliveries expected", expected, "")
	r.add("received", "deliveries received", got, "")
	r.add("lost", "lost", expected-got, "")
	r.add("per_conn_min_max", "messages per subscriber (min/max)", fmt.Sprintf("%d/%d", minPer, maxPer), "")
	r.add("duration_s", "first publish to last delivery", round(dur.Seconds(), 3), "s")
	if dur > 0 {
		r.add("deliveries_per_s", "deliveries per second", round(float64(all)/dur.Seconds(), 0), "/s")
	}
	r.add("server_cpu_ms", "server CPU during the run"+allNodes, round(float64(cpu)/float64(time.Millisecond), 1), "ms")
	r.add("server_cpu_user_sys_ms", "  of which user/system", fmt.Sprintf("%.0f/%.0f", float64(cpuUser)/1e6, float64(cpuSys)/1e6), "ms")
	if f.nodes > 1 {
		r.add("server_cpu_per_node_ms", "  of which node 0/1/...", cpuPerNode, "ms")
	}
	if dur > 0 {
		r.add("server_cores_used", "server cores busy, on average", round(float64(cpu)/float64(dur), 2), "")
	}
	if all > 0 {
		r.add("server_cpu_us_per_delivery", "server CPU per delivery", round(float64(cpu)/float64(time.Microsecond)/float64(all), 3), "us")
	}
	r.add("compression", "permessage-deflate", f.compression, "")
	if outErr == nil && outErr1 == nil && got > 0 {
		r.add("bytes_out_per_delivery", "server bytes out per delivery", round(float64(out1-out0)/float64(got), 1), "B")
	}
	for _, q := range []struct {
		key, label string
		q          float64
	}{{"latency_p50_ms", "latency p50", .5}, {"latency_p90_ms", "latency p90", .9}, {"latency_p99_ms", "latency p99", .99}, {"latency_max_ms", "latency max", 1}} {
		r.add(q.key, q.label, round(float64(hist.Quantile(q.q))/float64(time.Millisecond), 2), "ms")
	}
	if f.probes > 0 {
		r.add("probes", "Go client subscribers (package client)", f.probes, "")
		r.add("probe_received", "  deliveries to them", pt.Msgs, "")
		r.add("probe_lost", "  lost", probeExpected-pt.Msgs, "")
		for _, q := range []struct {
			key, label string
			q          float64
		}{{"probe_latency_p50_ms", "  their latency p50", .5}, {"probe_latency_p99_ms", "  their latency p99", .99}, {"probe_latency_max_ms", "  their latency max", 1}} {
			r.add(q.key, q.label, round(float64(probeHist.Quantile(q.q))/float64(time.Millisecond), 2), "ms")
		}
	}
	if f.onBroker() && brokerSeen {
		label := "broker CPU during the run"
		if f.broker != brokerRedisCluster {
			label += " (its processes on this host)"
		}
		r.add("broker_cpu_ms", label, round(float64(brokerCPU1-brokerCPU0)/float64(time.Millisecond), 1), "ms")
	}
	r.add("server_rss_kb", "server RSS after"+allNodes, rss, "KB")
	r.add("error_frames", "error frames", t.Errors+pub.status().Errors+pt.Errors, "")
	r.add("closed", "connections closed by server", t.Closed+pub.status().Closed+pt.Closed, "")
	if runErr != nil {
		return r, runErr
	}
	if lost := expected - got; lost != 0 {
		return r, fmt.Errorf("%d of %d deliveries lost (close codes %v, first client error: %q)", lost, expected, t.CloseCodes, t.FirstErr)
	}
	if lost := probeExpected - pt.Msgs; lost != 0 {
		return r, fmt.Errorf("%d of %d deliveries to the Go clients lost (close codes %v, first error: %q)", lost, probeExpected, pt.CloseCodes, pt.FirstErr)
	}
	return r, nil
}

func rateText(rate float64) string {
	if rate <= 0 {
		return "max"
	}
	return strconv.FormatFloat(rate, 'g', -1, 64) + "/s"
}
