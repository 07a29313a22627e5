package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/natsbroker"
	"github.com/switchboardhq/switchboard/redisbroker"
)

// brokerCounters are what both network brokers count, in one shape.
type brokerCounters struct {
	published, publishErrors, delivered, reconnects uint64
	subscriptions                                   int
}

func countersOf(b switchboard.Broker) (brokerCounters, bool) {
	switch b := b.(type) {
	case *redisbroker.Broker:
		s := b.Stats()
		return brokerCounters{s.Published, s.PublishErrors, s.Delivered, s.Reconnects, s.Subscriptions}, true
	case *natsbroker.Broker:
		s := b.Stats()
		return brokerCounters{s.Published, s.PublishErrors, s.Delivered, s.Reconnects, s.Subscriptions}, true
	}
	return brokerCounters{}, false
}

// clusterCollector exports the broker's health and counters and the
// cluster as this node sees it, at scrape time.
type clusterCollector struct {
	hub                                    *switchboard.Hub
	broker                                 switchboard.Broker
	up, nodes, subs                        *prometheus.Desc
	published, pubErrors, delivered, recon *prometheus.Desc
}

func newClusterCollector(h *switchboard.Hub, b switchboard.Broker) *clusterCollector {
	node := prometheus.Labels{"node": h.NodeID()}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, node) }
	return &clusterCollector{
		hub: h, broker: b,
		up:        d("switchboard_broker_up", "1 while the broker carries messages, 0 during an outage (then /readyz answers 503)."),
		nodes:     d("switchboard_cluster_nodes", "Live nodes of the cluster as this node's presence knows them, itself included."),
		subs:      d("switchboard_broker_subscriptions", "Broker channels this node subscribes to: one per room and user with a local connection, plus two."),
		published: d("switchboard_broker_published_total", "Payloads handed to the broker."),
		pubErrors: d("switchboard_broker_publish_errors_total", "Payloads the broker refused or failed to send (lost: pub/sub is at most once)."),
		delivered: d("switchboard_broker_delivered_total", "Payloads received from the broker."),
		recon:     d("switchboard_broker_reconnects_total", "Broker connections re-established after a loss."),
	}
}

// Describe implements prometheus.Collector.
func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.nodes, c.subs, c.published, c.pubErrors, c.delivered, c.recon} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	up := 0.0
	if brokerReady(c.broker) {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(len(c.hub.Nodes())))
	k, ok := countersOf(c.broker)
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.subs, prometheus.GaugeValue, float64(k.subscriptions))
	for _, v := range []struct {
		d *prometheus.Desc
		n uint64
	}{{c.published, k.published}, {c.pubErrors, k.publishErrors}, {c.delivered, k.delivered}, {c.recon, k.reconnects}} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n))
	}
}
