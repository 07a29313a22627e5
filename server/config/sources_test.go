package config

import (
	"reflect"
	"strconv"
	"testing"
	"time"
)

// sourceCase sets one flag through each source in turn.
type sourceCase struct {
	name  string
	flags []string // flag form (without the base flags)
	env   string   // value of the environment variable
	yaml  string   // YAML value text
	base  []string // extra flags needed for the result to validate
	get   func(*Config) any
	want  any
}

func sc(name, value string, get func(*Config) any, want any, base ...string) sourceCase {
	return sourceCase{name: name, flags: []string{"--" + name + "=" + value}, env: value,
		yaml: strconv.Quote(value), base: base, get: get, want: want}
}

func sourceCases() []sourceCase {
	jwt := []string{"--addr=0.0.0.0:1", "--auth=jwt"}
	return []sourceCase{
		sc("addr", "127.0.0.2:9000", func(c *Config) any { return c.Addr }, "127.0.0.2:9000"),
		sc("auth", "jwt", func(c *Config) any { return c.Auth }, "jwt", "--jwt-secret=x"),
		sc("jwt-secret", "sekrit", func(c *Config) any { return c.JWTSecret }, "sekrit", jwt...),
		sc("jwt-public-key", "/etc/pub.pem", func(c *Config) any { return c.JWTPublicKey }, "/etc/pub.pem", jwt...),
		sc("jwks-file", "/etc/jwks.json", func(c *Config) any { return c.JWKSFile }, "/etc/jwks.json", jwt...),
		sc("jwt-leeway", "1m5s", func(c *Config) any { return c.JWTLeeway }, 65*time.Second),
		sc("jwt-issuer", "https://id.example", func(c *Config) any { return c.JWTIssuer }, "https://id.example"),
		sc("jwt-audience", "switchboard", func(c *Config) any { return c.JWTAudience }, "switchboard"),
		sc("tls-cert", "c.pem", func(c *Config) any { return c.TLSCert }, "c.pem", "--tls-key=k.pem"),
		sc("tls-key", "k.pem", func(c *Config) any { return c.TLSKey }, "k.pem", "--tls-cert=c.pem"),
		{name: "api-key", flags: []string{"--api-key=a1", "--api-key=b,2"}, env: "a1, b2",
			yaml: "[a1, b2]", get: func(c *Config) any { return c.APIKeys }},
		{name: "allowed-origins", flags: []string{"--allowed-origins=https://a.io, https://b.io"},
			env: "https://a.io,https://b.io", yaml: "[https://a.io, https://b.io]",
			get:  func(c *Config) any { return c.AllowedOrigins },
			want: []string{"https://a.io", "https://b.io"}},
		sc("ping-interval", "500ms", func(c *Config) any { return c.PingInterval }, 500*time.Millisecond),
		sc("pong-timeout", "2s", func(c *Config) any { return c.PongTimeout }, 2*time.Second),
		sc("max-message-bytes", "1024", func(c *Config) any { return c.MaxMessageBytes }, 1024),
		sc("rate", "2.5", func(c *Config) any { return c.Rate }, 2.5),
		sc("burst", "1", func(c *Config) any { return c.Burst }, 1),
		sc("max-conns-per-user", "3", func(c *Config) any { return c.MaxConnsPerUser }, 3),
		sc("per-user-policy", "evict-oldest", func(c *Config) any { return c.PerUserPolicy }, "evict-oldest"),
		sc("max-conns", "5000", func(c *Config) any { return c.MaxConns }, 5000),
		sc("max-rooms", "7", func(c *Config) any { return c.MaxRooms }, 7),
		sc("max-data-bytes", "512", func(c *Config) any { return c.MaxDataBytes }, 512),
		{name: "read-only-rooms", flags: []string{"--read-only-rooms=news, alerts:*"},
			env: "news,alerts:*", yaml: "[news, 'alerts:*']",
			get:  func(c *Config) any { return c.ReadOnlyRooms },
			want: []string{"news", "alerts:*"}},
		{name: "history-rooms", flags: []string{"--history-rooms=chat:*,log"},
			env: "chat:*,log", yaml: "['chat:*', log]",
			get:  func(c *Config) any { return c.HistoryRooms },
			want: []string{"chat:*", "log"}},
		sc("history-users", "true", func(c *Config) any { return c.HistoryUsers }, true),
		sc("history-size", "500", func(c *Config) any { return c.HistorySize }, 500),
		sc("history-ttl", "90s", func(c *Config) any { return c.HistoryTTL }, 90*time.Second),
		sc("handshake-rate", "2.5", func(c *Config) any { return c.HandshakeRate }, 2.5),
		sc("handshake-burst", "3", func(c *Config) any { return c.HandshakeBurst }, 3),
		sc("handshake-timeout", "3s", func(c *Config) any { return c.HandshakeTimeout }, 3*time.Second),
		sc("queue-bytes", "4096", func(c *Config) any { return c.QueueBytes }, 4096),
		sc("write-timeout", "1m", func(c *Config) any { return c.WriteTimeout }, time.Minute),
		sc("compression", "true", func(c *Config) any { return c.Compression }, true),
		sc("sse", "false", func(c *Config) any { return c.SSE }, false),
		sc("compression-threshold", "1024", func(c *Config) any { return c.CompressionThreshold }, 1024),
		sc("shutdown-timeout", "1h", func(c *Config) any { return c.ShutdownTimeout }, time.Hour),
		sc("broker", "nats", func(c *Config) any { return c.Broker }, "nats"),
		sc("redis-url", "redis://r:6379/1", func(c *Config) any { return c.RedisURL }, "redis://r:6379/1", "--broker=redis"),
		sc("nats-url", "nats://n:4222", func(c *Config) any { return c.NATSURL }, "nats://n:4222", "--broker=nats"),
		sc("history-replicas", "3", func(c *Config) any { return c.HistoryReplicas }, 3, "--broker=nats"),
		sc("cluster-name", "eu-1", func(c *Config) any { return c.ClusterName }, "eu-1"),
		sc("presence-ttl", "45s", func(c *Config) any { return c.PresenceTTL }, 45*time.Second),
		sc("node-id", "edge-1", func(c *Config) any { return c.NodeID }, "edge-1"),
		sc("log-level", "debug", func(c *Config) any { return c.LogLevel }, "debug"),
		sc("log-format", "text", func(c *Config) any { return c.LogFormat }, "text"),
		sc("pprof", "127.0.0.1:6060", func(c *Config) any { return c.PprofAddr }, "127.0.0.1:6060"),
		sc("admin", "true", func(c *Config) any { return c.Admin }, true, "--api-key=k"),
		{name: "admin-key", flags: []string{"--admin-key=a1", "--admin-key=b,2"}, env: "a1, b2",
			yaml: "[a1, b2]", base: []string{"--admin"}, get: func(c *Config) any { return c.AdminKeys }},
		sc("webhook-url", "https://app.example/hooks", func(c *Config) any { return c.WebhookURL },
			"https://app.example/hooks", "--webhook-secret=s"),
		sc("webhook-secret", "whsec", func(c *Config) any { return c.WebhookSecret }, "whsec"),
		sc("webhook-max-age", "90s", func(c *Config) any { return c.WebhookMaxAge }, 90*time.Second),
		sc("webhook-room-events", "true", func(c *Config) any { return c.WebhookRoomEvents }, true),
	}
}

func TestEachFlagFromEachSource(t *testing.T) {
	covered := map[string]bool{"config": true}
	for _, tt := range sourceCases() {
		covered[tt.name] = true
		var env string
		for _, f := range Flags() {
			if f.Name == tt.name {
				env = f.Env
			}
		}
		want := map[string]any{"flag": tt.want, "env": tt.want, "yaml": tt.want}
		if tt.name == "api-key" || tt.name == "admin-key" { // flags are not comma-split; env and YAML scalars are
			want = map[string]any{"flag": []string{"a1", "b,2"}, "env": []string{"a1", "b2"}, "yaml": []string{"a1", "b2"}}
		}
		t.Run(tt.name+"/flag", func(t *testing.T) {
			c := mustLoad(t, append(append([]string{}, tt.base...), tt.flags...), nil)
			if got := tt.get(c); !reflect.DeepEqual(got, want["flag"]) {
				t.Errorf("got %#v, want %#v", got, want["flag"])
			}
		})
		t.Run(tt.name+"/env", func(t *testing.T) {
			c := mustLoad(t, tt.base, map[string]string{env: tt.env})
			if got := tt.get(c); !reflect.DeepEqual(got, want["env"]) {
				t.Errorf("got %#v, want %#v", got, want["env"])
			}
		})
		t.Run(tt.name+"/yaml", func(t *testing.T) {
			path := writeYAML(t, tt.name+": "+tt.yaml+"\n")
			c := mustLoad(t, append([]string{"--config", path}, tt.base...), nil)
			if got := tt.get(c); !reflect.DeepEqual(got, want["yaml"]) {
				t.Errorf("got %#v, want %#v", got, want["yaml"])
			}
			if c.ConfigFile != path {
				t.Errorf("ConfigFile = %q, want %q", c.ConfigFile, path)
			}
		})
	}
	for _, f := range Flags() {
		if !covered[f.Name] {
			t.Errorf("flag %s has no source test", f.Name)
		}
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	path := writeYAML(t, "max-conns: 5000\napi-key: [a, b]\n")
	other := writeYAML(t, "max-conns: 7\n")
	c := mustLoad(t, nil, map[string]string{"SWITCHBOARD_CONFIG": path})
	if c.MaxConns != 5000 || !reflect.DeepEqual(c.APIKeys, []string{"a", "b"}) || c.ConfigFile != path {
		t.Errorf("got max-conns %d api-key %q file %q", c.MaxConns, c.APIKeys, c.ConfigFile)
	}
	c = mustLoad(t, []string{"--config=" + other}, map[string]string{"SWITCHBOARD_CONFIG": path})
	if c.MaxConns != 7 || c.ConfigFile != other {
		t.Errorf("--config should beat SWITCHBOARD_CONFIG: got max-conns %d file %q", c.MaxConns, c.ConfigFile)
	}
}

func TestPrecedence(t *testing.T) {
	path := writeYAML(t, "max-conns: 300\nrate: 3\nlog-level: warn\nping-interval: 3s\napi-key: [file]\n")
	tests := []struct {
		name  string
		flags []string
		env   map[string]string
		want  func(*Config) bool
	}{
		{"file beats default", nil, nil, func(c *Config) bool {
			return c.MaxConns == 300 && c.Rate == 3 && c.LogLevel == "warn" && c.PingInterval == 3*time.Second &&
				reflect.DeepEqual(c.APIKeys, []string{"file"})
		}},
		{"env beats file", nil, map[string]string{"SWITCHBOARD_MAX_CONNS": "200", "SWITCHBOARD_RATE": "2",
			"SWITCHBOARD_PING_INTERVAL": "2s", "SWITCHBOARD_API_KEY": "env"}, func(c *Config) bool {
			return c.MaxConns == 200 && c.Rate == 2 && c.LogLevel == "warn" && c.PingInterval == 2*time.Second &&
				reflect.DeepEqual(c.APIKeys, []string{"env"})
		}},
		{"flag beats env", []string{"--max-conns=100", "--ping-interval=1s", "--api-key=flag"},
			map[string]string{"SWITCHBOARD_MAX_CONNS": "200", "SWITCHBOARD_RATE": "2", "SWITCHBOARD_API_KEY": "env"},
			func(c *Config) bool {
				return c.MaxConns == 100 && c.Rate == 2 && c.PingInterval == time.Second &&
					reflect.DeepEqual(c.APIKeys, []string{"flag"})
			}},
		{"empty env is unset", nil, map[string]string{"SWITCHBOARD_MAX_CONNS": "", "SWITCHBOARD_LOG_LEVEL": " "},
			func(c *Config) bool { return c.MaxConns == 300 && c.LogLevel == "warn" }},
		{"last flag wins", []string{"--max-conns=1", "--max-conns=2"}, nil,
			func(c *Config) bool { return c.MaxConns == 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, append([]string{"--config=" + path}, tt.flags...), tt.env)
			if !tt.want(c) {
				t.Errorf("unexpected config: %v", c)
			}
		})
	}
}

func TestYAMLForms(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(*Config) bool
	}{
		{"empty file", "", func(c *Config) bool { return c.MaxConns == 100000 }},
		{"comments only", "# nothing\n", func(c *Config) bool { return c.MaxConns == 100000 }},
		{"null value keeps default", "max-conns:\n", func(c *Config) bool { return c.MaxConns == 100000 }},
		{"comma-separated scalar list", "api-key: a, b\nallowed-origins: x,y\n", func(c *Config) bool {
			return reflect.DeepEqual(c.APIKeys, []string{"a", "b"}) && reflect.DeepEqual(c.AllowedOrigins, []string{"x", "y"})
		}},
		{"block list", "api-key:\n  - one\n  - two\n", func(c *Config) bool {
			return reflect.DeepEqual(c.APIKeys, []string{"one", "two"})
		}},
		{"yaml-looking strings stay raw", "node-id: no\nrate: 1e2\n", func(c *Config) bool {
			return c.NodeID == "no" && c.Rate == 100
		}},
		{"anchors", "ping-interval: &d 4s\npong-timeout: *d\n", func(c *Config) bool {
			return c.PingInterval == 4*time.Second && c.PongTimeout == 4*time.Second
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, []string{"--config", writeYAML(t, tt.body)}, nil)
			if !tt.check(c) {
				t.Errorf("unexpected config: %v", c)
			}
		})
	}
}
