package server

import (
	"fmt"
	"log/slog"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/natsbroker"
	"github.com/switchboardhq/switchboard/redisbroker"
	"github.com/switchboardhq/switchboard/server/config"
)

// newBroker builds the broker the configuration names. Errors never carry
// the broker URL, which may hold a password.
func newBroker(cfg *config.Config, log *slog.Logger) (switchboard.Broker, error) {
	switch cfg.Broker {
	case config.BrokerRedis:
		prefix := ""
		if cfg.ClusterName != "" {
			prefix = redisbroker.DefaultPrefix + cfg.ClusterName + ":"
		}
		b, err := redisbroker.New(redisbroker.Options{URL: cfg.RedisURL, Prefix: prefix, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("redis broker (--redis-url): %w", err)
		}
		return b, nil
	case config.BrokerNATS:
		prefix := ""
		if cfg.ClusterName != "" {
			prefix = natsbroker.DefaultPrefix + cfg.ClusterName + "."
		}
		b, err := natsbroker.New(natsbroker.Options{URL: cfg.NATSURL, Prefix: prefix, Name: "switchboard " + cfg.NodeID, Logger: log,
			HistoryReplicas: cfg.HistoryReplicas})
		if err != nil {
			return nil, fmt.Errorf("nats broker (--nats-url): %w", err)
		}
		return b, nil
	}
	return switchboard.NewMemoryBroker(), nil
}

// brokerReady reports whether the broker can carry messages now; brokers
// without a notion of readiness (the in-memory one) always can.
func brokerReady(b switchboard.Broker) bool {
	r, ok := b.(interface{ Ready() bool })
	return !ok || r.Ready()
}
