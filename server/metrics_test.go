package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

// testutilCounter sums every series of the named family.
func testutilCounter(t *testing.T, srv *Server, name string) float64 {
	t.Helper()
	mfs, err := srv.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// seriesValue is the value of the series of name with the given labels.
func seriesValue(t *testing.T, srv *Server, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := srv.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsEndpointAndLabels(t *testing.T) {
	srv, _ := testServer(t, "--api-key=k", "--ping-interval=50ms")
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := srv.Handler()

	// Traffic with distinctive ids: none of them may show up in a label.
	secretish := []string{"user-7f3a", "room-9c1d"}
	c := dialWS(t, ctx, hs.URL, secretish[0])
	c.join(ctx, secretish[1])
	call(t, h, "POST", "/api/publish", "k", `{"room":"room-9c1d","data":1}`)
	c.next(ctx, "message")
	c.next(ctx, "ping") // the client library answers nothing: send the pong ourselves
	if err := c.c.Write(ctx, 1, []byte(`{"type":"pong"}`)); err != nil {
		t.Fatal(err)
	}
	call(t, h, "GET", "/api/stats", "wrong", "")
	call(t, h, "GET", "/api/not-a-route/user-7f3a", "k", "")
	call(t, h, "GET", "/api/presence?room=room-9c1d", "k", "")
	call(t, h, "GET", "/api/history?room=room-9c1d", "k", "") // keeps none: 404
	srv.metrics.webhook(webhookDelivered)
	// The pong is read by the hub asynchronously: wait for the RTT sample.
	waitMetrics(t, "a ping round-trip observed", func() bool { return testutilCounter(t, srv, "switchboard_ping_rtt_seconds") > 0 })

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	for _, want := range []string{
		`switchboard_connections{node="test-node"} 1`, `switchboard_users_online{node="test-node"} 1`,
		`switchboard_rooms{node="test-node"} 1`, `switchboard_connections_opened_total{node="test-node"} 1`,
		`switchboard_messages_in_total{node="test-node",type="join"} 1`, "switchboard_deliveries_total",
		"switchboard_bytes_in_total", "switchboard_bytes_out_total", `switchboard_drops_total{node="test-node",reason="slow_consumer"} 0`,
		`switchboard_closes_total{code="4003",node="test-node"} 0`, `switchboard_handshake_rejections_total{node="test-node",reason="unauthorized"} 0`,
		"switchboard_panics_total", "switchboard_connections_compressed_total", "switchboard_messages_compressed_total",
		"switchboard_ping_rtt_seconds_bucket", "switchboard_queue_bytes_bucket",
		`switchboard_api_requests_total{code="200",node="test-node",route="publish"} 1`,
		`switchboard_api_requests_total{code="404",node="test-node",route="not_found"} 1`,
		`switchboard_api_requests_total{code="404",node="test-node",route="history"} 1`,
		`switchboard_api_unauthorized_total{node="test-node"} 1`,
		`switchboard_webhook_deliveries_total{node="test-node",result="delivered"} 1`,
		`switchboard_webhook_deliveries_total{node="test-node",result="expired"} 0`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Every switchboard_* label is from the allow-list, with values from
	// bounded sets; no label anywhere carries an id or a name.
	allowed := map[string]func(string) bool{
		"node": func(v string) bool { return v == "test-node" },
		"type": func(v string) bool { return slices.Contains(switchboard.InboundTypes(), v) },
		"reason": func(v string) bool {
			return slices.Contains(append(switchboard.DropReasons(), switchboard.RejectReasons()...), v)
		},
		"code": func(v string) bool { _, err := strconv.Atoi(v); return err == nil && len(v) <= 4 },
		"route": func(v string) bool {
			return slices.Contains([]string{routePublish, routeDisconnect, routePresence, routeUsers, routeStats, routeHistory, routeOpenAPI, routeNotFound}, v)
		},
		"result": func(v string) bool { return slices.Contains(webhookResults, v) },
	}
	mfs, err := srv.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				for _, s := range secretish {
					if strings.Contains(lp.GetValue(), s) {
						t.Errorf("%s label %s=%q carries traffic data", mf.GetName(), lp.GetName(), lp.GetValue())
					}
				}
				if !strings.HasPrefix(mf.GetName(), "switchboard_") {
					continue
				}
				ok, known := allowed[lp.GetName()]
				if !known || !ok(lp.GetValue()) {
					t.Errorf("%s: label %s=%q not allowed", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
		if strings.HasPrefix(mf.GetName(), "switchboard_") && !regexp.MustCompile(`^switchboard_[a-z_]+$`).MatchString(mf.GetName()) {
			t.Errorf("odd metric name %s", mf.GetName())
		}
		checkType(t, mf)
	}
}

// checkType pins the documented metric types.
func checkType(t *testing.T, mf *dto.MetricFamily) {
	t.Helper()
	want := map[string]dto.MetricType{
		"switchboard_connections": dto.MetricType_GAUGE, "switchboard_users_online": dto.MetricType_GAUGE,
		"switchboard_rooms": dto.MetricType_GAUGE, "switchboard_ping_rtt_seconds": dto.MetricType_HISTOGRAM,
		"switchboard_queue_bytes": dto.MetricType_HISTOGRAM,
		"switchboard_broker_up":   dto.MetricType_GAUGE, "switchboard_cluster_nodes": dto.MetricType_GAUGE,
		"switchboard_broker_subscriptions": dto.MetricType_GAUGE,
	}
	name := mf.GetName()
	w, ok := want[name]
	if !ok && strings.HasPrefix(name, "switchboard_") {
		w, ok = dto.MetricType_COUNTER, true
		if !strings.HasSuffix(name, "_total") {
			t.Errorf("%s is not in the type table", name)
		}
	}
	if ok && mf.GetType() != w {
		t.Errorf("%s has type %v, want %v", name, mf.GetType(), w)
	}
}

// With a network broker, /metrics shows it up, its subscriptions (the
// hub-wide and presence channels at least) and the cluster's nodes.
func TestBrokerAndClusterMetrics(t *testing.T) {
	srv, _ := testServer(t, "--broker=redis", "--cluster-name=m"+strconv.FormatInt(time.Now().UnixNano(), 36))
	// The first presence heartbeat is published at start.
	waitMetrics(t, "the broker up, subscribed and publishing", func() bool {
		return testutilCounter(t, srv, "switchboard_broker_up") == 1 && testutilCounter(t, srv, "switchboard_broker_subscriptions") >= 2 &&
			testutilCounter(t, srv, "switchboard_broker_published_total") >= 1
	})
	if n := testutilCounter(t, srv, "switchboard_cluster_nodes"); n != 1 {
		t.Fatalf("switchboard_cluster_nodes = %v, want 1", n)
	}
}

// waitMetrics polls cond, which reads metrics the hub updates on its own
// goroutines, until it holds; the test fails after a deadline.
func waitMetrics(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, 10*time.Millisecond, what, cond)
}
