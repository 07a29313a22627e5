package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboardhq/switchboard"
)

// Webhook delivery results, the values of switchboard_webhook_deliveries_total{result}.
const (
	webhookDelivered = "delivered" // the receiver answered 2xx
	webhookRetried   = "retried"   // an attempt failed and will be retried
	webhookExpired   = "expired"   // dropped: still failing after --webhook-max-age
	webhookOverflow  = "overflow"  // dropped: the queue was full (oldest event dropped)
	webhookShutdown  = "shutdown"  // dropped: the shutdown deadline passed first
)

var webhookResults = []string{webhookDelivered, webhookRetried, webhookExpired, webhookOverflow, webhookShutdown}

// metrics is the node's Prometheus registry and the instruments the server
// feeds directly. Hub totals are read at scrape time by hubCollector, so
// the hot path only touches the hub's own atomics.
type metrics struct {
	reg          *prometheus.Registry
	pingRTT      prometheus.Histogram
	queueBytes   prometheus.Histogram
	apiRequests  *prometheus.CounterVec
	unauthorized prometheus.Counter
	webhooks     *prometheus.CounterVec
}

// newMetrics builds the registry. The hub collector is added by attachHub
// once the hub exists (the hub needs the observer first).
func newMetrics(node string) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	nodeLabel := prometheus.Labels{"node": node}
	m.pingRTT = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "switchboard_ping_rtt_seconds",
		Help:        "Time from a server ping to the client's pong.",
		ConstLabels: nodeLabel,
		Buckets:     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.queueBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "switchboard_queue_bytes",
		Help:        "Outbound backlog of a connection in bytes, sampled once per connection per sweep.",
		ConstLabels: nodeLabel,
		Buckets:     []float64{0, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20},
	})
	m.apiRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "switchboard_api_requests_total",
		Help:        "Backend API requests by route name and HTTP status code.",
		ConstLabels: nodeLabel,
	}, []string{"route", "code"})
	m.unauthorized = prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "switchboard_api_unauthorized_total",
		Help:        "Backend API requests refused for a missing or wrong API key.",
		ConstLabels: nodeLabel,
	})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "switchboard_webhook_deliveries_total",
		Help:        "Presence webhook outcomes: delivered, retried (one failed attempt), expired, overflow, shutdown (dropped).",
		ConstLabels: nodeLabel,
	}, []string{"result"})
	for _, r := range webhookResults {
		m.webhooks.WithLabelValues(r)
	}
	m.reg.MustRegister(m.pingRTT, m.queueBytes, m.apiRequests, m.unauthorized, m.webhooks)
	return m
}

func (m *metrics) attachHub(h *switchboard.Hub, b switchboard.Broker) {
	m.reg.MustRegister(newHubCollector(h), newClusterCollector(h, b))
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// PingRTT implements switchboard.Observer.
func (m *metrics) PingRTT(d time.Duration) { m.pingRTT.Observe(d.Seconds()) }

// QueueBytes implements switchboard.Observer.
func (m *metrics) QueueBytes(n int64) { m.queueBytes.Observe(float64(n)) }

func (m *metrics) webhook(result string) { m.webhooks.WithLabelValues(result).Inc() }

// hubCollector turns Hub.Stats and Hub.Counters into const metrics at
// scrape time. Every label value comes from the hub's fixed label sets.
type hubCollector struct {
	hub                                   *switchboard.Hub
	conns, users, rooms                   *prometheus.Desc
	opened, deliveries, bytesIn, bytesOut *prometheus.Desc
	messagesIn, drops, closes, rejections *prometheus.Desc
	panics                                *prometheus.Desc
	connsDeflate, deflated                *prometheus.Desc
}

func newHubCollector(h *switchboard.Hub) *hubCollector {
	node := prometheus.Labels{"node": h.NodeID()}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, node)
	}
	return &hubCollector{
		hub:        h,
		conns:      d("switchboard_connections", "Open WebSocket connections on this node."),
		users:      d("switchboard_users_online", "Users with at least one connection on this node."),
		rooms:      d("switchboard_rooms", "Rooms with at least one connection on this node."),
		opened:     d("switchboard_connections_opened_total", "Accepted WebSocket handshakes."),
		deliveries: d("switchboard_deliveries_total", "Frames queued to connections (one per recipient)."),
		bytesIn:    d("switchboard_bytes_in_total", "WebSocket payload bytes received from clients."),
		bytesOut:   d("switchboard_bytes_out_total", "Bytes written to client sockets."),
		messagesIn: d("switchboard_messages_in_total", "Client frames by type (invalid: did not decode).", "type"),
		drops:      d("switchboard_drops_total", "Frames not delivered, by reason.", "reason"),
		closes:     d("switchboard_closes_total", "Closed connections by close code (0: any other code).", "code"),
		rejections: d("switchboard_handshake_rejections_total", "Refused handshakes by reason.", "reason"),
		panics:     d("switchboard_panics_total", "Recovered panics in handlers and callbacks."),
		connsDeflate: d("switchboard_connections_compressed_total",
			"Accepted handshakes that negotiated permessage-deflate (--compression)."),
		deflated: d("switchboard_messages_compressed_total",
			"Messages compressed; a broadcast counts once, however many recipients share it."),
	}
}

// Describe implements prometheus.Collector.
func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.users, c.rooms, c.opened, c.deliveries, c.bytesIn,
		c.bytesOut, c.messagesIn, c.drops, c.closes, c.rejections, c.panics, c.connsDeflate, c.deflated} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	st, k := c.hub.Stats(), c.hub.Counters()
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.conns, st.Connections)
	gauge(c.users, st.Users)
	gauge(c.rooms, st.Rooms)
	counter(c.opened, k.ConnectionsOpened)
	counter(c.deliveries, k.Deliveries)
	counter(c.bytesIn, k.BytesIn)
	counter(c.bytesOut, k.BytesOut)
	counter(c.panics, k.Panics)
	counter(c.connsDeflate, k.ConnectionsCompressed)
	counter(c.deflated, k.MessagesCompressed)
	for _, t := range switchboard.InboundTypes() {
		counter(c.messagesIn, k.MessagesIn[t], t)
	}
	for _, r := range switchboard.DropReasons() {
		counter(c.drops, k.Drops[r], r)
	}
	for _, code := range switchboard.CloseCodes() {
		counter(c.closes, k.Closes[code], strconv.Itoa(code))
	}
	for _, r := range switchboard.RejectReasons() {
		counter(c.rejections, k.HandshakeRejections[r], r)
	}
}
