package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		yaml  string // written to a file passed with --config when non-empty
		parts []string
	}{
		{"env int", nil, map[string]string{"SWITCHBOARD_MAX_CONNS": "abc"}, "",
			[]string{`SWITCHBOARD_MAX_CONNS: invalid integer "abc"`}},
		{"env float", nil, map[string]string{"SWITCHBOARD_RATE": "fast"}, "",
			[]string{`SWITCHBOARD_RATE: invalid number "fast"`}},
		{"env infinite float", nil, map[string]string{"SWITCHBOARD_RATE": "+Inf"}, "",
			[]string{`SWITCHBOARD_RATE: invalid number "+Inf"`}},
		{"env duration", nil, map[string]string{"SWITCHBOARD_PONG_TIMEOUT": "10"}, "",
			[]string{`SWITCHBOARD_PONG_TIMEOUT: invalid duration "10"`, "30s"}},
		{"flag int", []string{"--burst=many"}, nil, "", []string{`--burst: invalid integer "many"`}},
		{"flag duration", []string{"--write-timeout", "soon"}, nil, "", []string{`--write-timeout: invalid duration "soon"`}},
		{"unknown flag", []string{"--max-connections=5"}, nil, "", []string{"max-connections", "--help"}},
		{"missing value", []string{"--addr"}, nil, "", []string{"addr"}},
		{"stray argument", []string{"--rate=1", "extra"}, nil, "", []string{`unexpected argument "extra"`}},
		{"several at once", []string{"--burst=x"}, map[string]string{"SWITCHBOARD_MAX_ROOMS": "y"}, "",
			[]string{"--burst", "SWITCHBOARD_MAX_ROOMS"}},
		{"missing file", []string{"--config=/nonexistent/switchboard.yaml"}, nil, "",
			[]string{"--config", "/nonexistent/switchboard.yaml"}},
		{"yaml unknown key", nil, nil, "addr: 127.0.0.1:1\nmax-connections: 5\n",
			[]string{`unknown key "max-connections"`, "switchboard.yaml"}},
		{"yaml config key", nil, nil, "config: other.yaml\n", []string{`"config"`, "switchboard.yaml"}},
		{"yaml duplicate key", nil, nil, "rate: 1\nrate: 2\n", []string{`switchboard.yaml:2: key "rate": duplicate key`}},
		{"yaml int", nil, nil, "max-conns: lots\n", []string{`switchboard.yaml:1: key "max-conns": invalid integer "lots"`}},
		{"yaml duration", nil, nil, "\npresence-ttl: 30\n", []string{`switchboard.yaml:2: key "presence-ttl": invalid duration "30"`}},
		{"yaml list for scalar", nil, nil, "addr: [a, b]\n", []string{`key "addr"`, "single string"}},
		{"yaml map for list", nil, nil, "api-key: {a: b}\n", []string{`key "api-key"`, "list of strings"}},
		{"yaml nested list", nil, nil, "allowed-origins: [[a]]\n", []string{`key "allowed-origins"`, "list of strings"}},
		{"yaml not a mapping", nil, nil, "- a\n- b\n", []string{"switchboard.yaml", "mapping"}},
		{"yaml syntax", nil, nil, "rate: [1\n", []string{"switchboard.yaml", "invalid YAML"}},
		{"address without a port: one error, not an auth one too", []string{"--addr=127.0.0.1"}, nil, "",
			[]string{"--addr"}},
		{"empty entry in a list variable", nil, map[string]string{"SWITCHBOARD_API_KEY": ","}, "",
			[]string{"--api-key must not be empty"}},
		{"trailing comma in a list flag", []string{"--history-rooms=chat:*,"}, nil, "",
			[]string{"--history-rooms must not contain empty entries"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.yaml != "" {
				args = append([]string{"--config=" + writeYAML(t, tt.yaml)}, args...)
			}
			c, err := Load(args, envMap(tt.env), nil)
			if c != nil {
				t.Errorf("got config %v with error", c)
			}
			wantErr(t, err, tt.parts...)
		})
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	path := writeYAML(t, "jwt-secret: [not, a, string]\napi-key: {k: yamlkey}\n")
	_, err := Load([]string{"--config=" + path, "--addr=0.0.0.0:1", "--api-key=", "--jwt-secret=flagsecret",
		"--broker=redis", "--redis-url=http://u:redispass@h"}, nil, nil)
	wantErr(t, err)
	for _, s := range []string{"yamlkey", "flagsecret", "redispass", "not, a"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains secret %q", err, s)
		}
	}
	_, err = Load([]string{"--broker=nats", "--nats-url=nats://u:natspass@n1:4222,http://u:natspass@n2,nats://u:nats%zzpass@n3"}, nil, nil)
	wantErr(t, err, "--nats-url: entry 2 of 3", "--nats-url: entry 3 of 3")
	for _, s := range []string{"natspass", "zzpass"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains secret %q", err, s)
		}
	}
}

func TestAuthDefaultByAddress(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:8080", "none"},
		{"127.1.2.3:8080", "none"},
		{"0.0.0.0:8080", "jwt"},
		{":8080", "jwt"},
		{"[::1]:1", "none"},
		{"[::]:1", "jwt"},
		{"localhost:1", "none"},
		{"LocalHost:1", "none"},
		{"10.0.0.1:80", "jwt"},
		{"example.com:443", "jwt"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			c := mustLoad(t, []string{"--addr=" + tt.addr, "--jwt-secret=x"}, nil)
			if c.Auth != tt.want {
				t.Errorf("auth for %s = %q, want %q", tt.addr, c.Auth, tt.want)
			}
		})
	}
}

// valid returns a configuration that passes Validate.
func valid() Config {
	return Config{
		Addr: "127.0.0.1:8080", Auth: "none", JWTLeeway: 30 * time.Second,
		PingInterval: 25 * time.Second, PongTimeout: 10 * time.Second, MaxMessageBytes: 65536,
		Rate: 20, Burst: 40, MaxConnsPerUser: 8, PerUserPolicy: "reject", MaxConns: 100000, MaxRooms: 64,
		QueueBytes: 1 << 20, WriteTimeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second,
		Broker: "memory", RedisURL: "redis://127.0.0.1:6379/0", NATSURL: "nats://127.0.0.1:4222",
		PresenceTTL: 30 * time.Second, NodeID: "n1", LogLevel: "info", LogFormat: "json",
		HandshakeRate: 20, HandshakeBurst: 50, HandshakeTimeout: 10 * time.Second,
		WebhookMaxAge: 5 * time.Minute, HistorySize: 100, HistoryTTL: 5 * time.Minute, HistoryReplicas: 1,
		CompressionThreshold: 256,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"bad addr", func(c *Config) { c.Addr = "8080" }, `--addr must be host:port (e.g. 127.0.0.1:8080 or :8080), got "8080"`},
		{"auth none off loopback", func(c *Config) { c.Addr = "0.0.0.0:8080" },
			`--auth=none refuses to listen on 0.0.0.0:8080 (not loopback): use --auth=jwt with --jwt-secret, or listen on 127.0.0.1`},
		{"empty auth resolves to jwt", func(c *Config) { c.Auth = ""; c.Addr = ":1" }, "--auth=jwt needs a token verification key"},
		{"empty auth resolves to none", func(c *Config) { c.Auth = "" }, ""},
		{"auth unknown", func(c *Config) { c.Auth = "basic" }, `--auth must be "none" or "jwt", got "basic"`},
		{"jwt without key", func(c *Config) { c.Auth = "jwt" },
			"--auth=jwt needs a token verification key: set --jwt-secret (HS256), --jwt-public-key (RS256/ES256 PEM) or --jwks-file"},
		{"jwt with secret", func(c *Config) { c.Auth = "jwt"; c.JWTSecret = "s" }, ""},
		{"jwt with public key", func(c *Config) { c.Auth = "jwt"; c.JWTPublicKey = "k.pem" }, ""},
		{"jwt with jwks", func(c *Config) { c.Auth = "jwt"; c.JWKSFile = "j.json" }, ""},
		{"jwt secret and public key", func(c *Config) { c.Auth = "jwt"; c.JWTSecret = "s"; c.JWTPublicKey = "k.pem" },
			"--jwt-secret, --jwt-public-key and --jwks-file exclude each other: give exactly one"},
		{"jwt public key and jwks", func(c *Config) { c.Auth = "jwt"; c.JWTPublicKey = "k.pem"; c.JWKSFile = "j.json" },
			"--jwt-secret, --jwt-public-key and --jwks-file exclude each other"},
		{"jwt issuer and audience", func(c *Config) { c.Auth = "jwt"; c.JWTSecret = "s"; c.JWTIssuer = "i"; c.JWTAudience = "a" }, ""},
		{"negative leeway", func(c *Config) { c.JWTLeeway = -time.Second }, "--jwt-leeway must not be negative, got -1s"},
		{"zero leeway", func(c *Config) { c.JWTLeeway = 0 }, ""},
		{"tls cert only", func(c *Config) { c.TLSCert = "c" }, "--tls-cert and --tls-key must be given together"},
		{"tls key only", func(c *Config) { c.TLSKey = "k" }, "--tls-cert and --tls-key must be given together"},
		{"empty api key", func(c *Config) { c.APIKeys = []string{"a", ""} }, "--api-key must not be empty"},
		{"empty admin key", func(c *Config) { c.Admin = true; c.AdminKeys = []string{" "} }, "--admin-key must not be empty"},
		{"admin without a key", func(c *Config) { c.Admin = true }, "--admin needs a key to open the dashboard"},
		{"admin with the api key", func(c *Config) { c.Admin = true; c.APIKeys = []string{"k"} }, ""},
		{"admin with an admin key", func(c *Config) { c.Admin = true; c.AdminKeys = []string{"a"} }, ""},
		{"admin key without admin", func(c *Config) { c.AdminKeys = []string{"a"} }, "--admin-key is set but the dashboard is off"},
		{"empty origin", func(c *Config) { c.AllowedOrigins = []string{" "} }, "--allowed-origins must not contain empty entries"},
		{"ping-interval", func(c *Config) { c.PingInterval = 0 }, "--ping-interval must be a positive duration (e.g. 10s), got 0s"},
		{"pong-timeout", func(c *Config) { c.PongTimeout = 0 }, "--pong-timeout must be a positive duration"},
		{"write-timeout", func(c *Config) { c.WriteTimeout = -1 }, "--write-timeout must be a positive duration"},
		{"shutdown-timeout", func(c *Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout must be a positive duration"},
		{"presence-ttl", func(c *Config) { c.PresenceTTL = 0 }, "--presence-ttl must be a positive duration"},
		{"cluster-name", func(c *Config) { c.ClusterName = "a.b" }, "--cluster-name may hold only letters, digits, - and _"},
		{"history-ttl", func(c *Config) { c.HistoryTTL = 0 }, "--history-ttl must be a positive duration"},
		{"history-ttl short", func(c *Config) { c.HistoryTTL = 3 * time.Second }, "--history-ttl must be at least 10s, got 3s"},
		{"presence-ttl short", func(c *Config) { c.PresenceTTL = time.Millisecond }, "--presence-ttl must be at least 3s, got 1ms"},
		{"history-size", func(c *Config) { c.HistorySize = 0 }, "--history-size must be at least 1, got 0"},
		{"compression-threshold", func(c *Config) { c.CompressionThreshold = 0 }, "--compression-threshold must be at least 1, got 0"},
		{"history-rooms pattern", func(c *Config) { c.HistoryRooms = []string{"bad room"} }, `--history-rooms: "bad room" is neither a room name`},
		{"history-rooms double star", func(c *Config) { c.HistoryRooms = []string{"chat:**"} }, `--history-rooms: "chat:**" is neither`},
		{"read-only-rooms inner star", func(c *Config) { c.ReadOnlyRooms = []string{"a*b"} }, `--read-only-rooms: "a*b" is neither`},
		{"max-message-bytes", func(c *Config) { c.MaxMessageBytes = 0 }, "--max-message-bytes must be at least 1, got 0"},
		{"burst", func(c *Config) { c.Burst = 0 }, "--burst must be at least 1, got 0"},
		{"max-conns-per-user", func(c *Config) { c.MaxConnsPerUser = -1 }, "--max-conns-per-user must be at least 1, got -1"},
		{"max-conns", func(c *Config) { c.MaxConns = 0 }, "--max-conns must be at least 1"},
		{"max-rooms", func(c *Config) { c.MaxRooms = 0 }, "--max-rooms must be at least 1"},
		{"queue-bytes", func(c *Config) { c.QueueBytes = 0 }, "--queue-bytes must be at least 1"},
		{"rate zero", func(c *Config) { c.Rate = 0 }, "--rate must be a positive number of messages per second, got 0"},
		{"rate negative", func(c *Config) { c.Rate = -0.5 }, "--rate must be a positive number"},
		{"rate fractional", func(c *Config) { c.Rate = 0.1 }, ""},
		{"per-user-policy", func(c *Config) { c.PerUserPolicy = "x" }, `--per-user-policy must be "reject" or "evict-oldest", got "x"`},
		{"evict-oldest", func(c *Config) { c.PerUserPolicy = "evict-oldest" }, ""},
		{"broker", func(c *Config) { c.Broker = "kafka" }, `--broker must be "memory", "redis" or "nats", got "kafka"`},
		{"redis url", func(c *Config) { c.Broker = "redis"; c.RedisURL = "127.0.0.1:6379" }, "--redis-url must be a redis:// or rediss:// URL"},
		{"rediss url", func(c *Config) { c.Broker = "redis"; c.RedisURL = "rediss://:p@h:6380/0" }, ""},
		{"redis url unused", func(c *Config) { c.RedisURL = "" }, ""},
		{"nats url", func(c *Config) { c.Broker = "nats"; c.NATSURL = "" }, "--nats-url must not be empty with --broker=nats"},
		{"nats cluster", func(c *Config) {
			c.Broker = "nats"
			c.NATSURL = "nats://a:pa@n1:4222, tls://b:pb@n2:4222,n3:4222,wss://n4:443"
		}, ""},
		{"nats empty entry", func(c *Config) { c.Broker = "nats"; c.NATSURL = "nats://n1:4222,,nats://n2:4222" }, "--nats-url has an empty entry"},
		{"nats scheme", func(c *Config) { c.Broker = "nats"; c.NATSURL = "nats://n1:4222,redis://n2:6379" },
			"--nats-url: entry 2 of 2 is not a NATS URL such as nats://[user:password@]host:4222"},
		{"nats no host", func(c *Config) { c.Broker = "nats"; c.NATSURL = "nats://" }, "--nats-url: entry 1 of 1 is not a NATS URL"},
		{"nats url unused", func(c *Config) { c.NATSURL = "nats://" }, ""},
		{"history-replicas 3", func(c *Config) { c.HistoryReplicas = 3 }, ""},
		{"history-replicas 5", func(c *Config) { c.HistoryReplicas = 5 }, ""},
		{"history-replicas 0", func(c *Config) { c.HistoryReplicas = 0 }, "--history-replicas must be between 1 and 5, got 0"},
		{"history-replicas 6", func(c *Config) { c.HistoryReplicas = 6 },
			"--history-replicas must be between 1 and 5, got 6: it is how many NATS servers keep each history message; use 1 with a single NATS server, 3 with a NATS cluster of 3 or more"},
		{"node-id", func(c *Config) { c.NodeID = "" }, "--node-id must not be empty"},
		{"handshake-rate", func(c *Config) { c.HandshakeRate = 0 }, "--handshake-rate must be a positive number"},
		{"handshake-burst", func(c *Config) { c.HandshakeBurst = 0 }, "--handshake-burst must be at least 1"},
		{"handshake-timeout", func(c *Config) { c.HandshakeTimeout = 0 }, "--handshake-timeout must be a positive duration"},
		{"max-data-bytes over frame", func(c *Config) { c.MaxDataBytes = 70000 }, "--max-data-bytes must be between 0"},
		{"max-data-bytes", func(c *Config) { c.MaxDataBytes = 100 }, ""},
		{"read-only-rooms", func(c *Config) { c.ReadOnlyRooms = []string{"a", " "} }, "--read-only-rooms must not contain empty entries"},
		{"log-level", func(c *Config) { c.LogLevel = "trace" }, `--log-level must be "debug", "info", "warn" or "error", got "trace"`},
		{"log-format", func(c *Config) { c.LogFormat = "xml" }, `--log-format must be "json" or "text", got "xml"`},
		{"pprof loopback", func(c *Config) { c.PprofAddr = "127.0.0.1:6060" }, ""},
		{"pprof ipv6 loopback", func(c *Config) { c.PprofAddr = "[::1]:6060" }, ""},
		{"pprof localhost", func(c *Config) { c.PprofAddr = "localhost:0" }, ""},
		{"pprof all interfaces", func(c *Config) { c.PprofAddr = ":6060" }, "--pprof refuses :6060: profiles expose memory contents, so the address must be loopback"},
		{"pprof public", func(c *Config) { c.PprofAddr = "0.0.0.0:6060" }, "--pprof refuses 0.0.0.0:6060"},
		{"pprof not host:port", func(c *Config) { c.PprofAddr = "6060" }, `--pprof must be host:port on a loopback address (e.g. 127.0.0.1:6060), got "6060"`},
		{"webhook", func(c *Config) { c.WebhookURL = "https://a.example/h"; c.WebhookSecret = "s" }, ""},
		{"webhook without secret", func(c *Config) { c.WebhookURL = "https://a.example/h" }, "--webhook-url needs --webhook-secret"},
		{"webhook bad url", func(c *Config) { c.WebhookURL = "ftp://a.example/h"; c.WebhookSecret = "s" }, "--webhook-url must be an http:// or https:// URL"},
		{"webhook no host", func(c *Config) { c.WebhookURL = "http:///h"; c.WebhookSecret = "s" }, "--webhook-url must be an http:// or https:// URL"},
		{"webhook max age", func(c *Config) { c.WebhookMaxAge = 0 }, "--webhook-max-age must be a positive duration (e.g. 5m), got 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.modify(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			wantErr(t, err, tt.want)
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := valid()
	c.Burst, c.LogFormat = 0, "xml"
	err := c.Validate()
	wantErr(t, err, "--burst", "--log-format")
}

func TestLoadValidates(t *testing.T) {
	_, err := Load([]string{"--addr=0.0.0.0:8080", "--auth=none"}, nil, nil)
	wantErr(t, err, "--auth=none refuses to listen on 0.0.0.0:8080 (not loopback)")
	_, err = Load(nil, envMap(map[string]string{"SWITCHBOARD_PER_USER_POLICY": "x"}), nil)
	wantErr(t, err, `--per-user-policy must be "reject" or "evict-oldest", got "x"`)
	_, err = Load([]string{"--addr=0.0.0.0:8080"}, nil, nil)
	wantErr(t, err, "--auth=jwt needs a token verification key")
}

// An address without a port gets its own error and no second, misleading
// one about JWT keys.
func TestAddressWithoutPortIsOneError(t *testing.T) {
	_, err := Load([]string{"--addr=127.0.0.1"}, envMap(nil), nil)
	if err == nil || !strings.Contains(err.Error(), "--addr") || strings.Contains(err.Error(), "jwt") {
		t.Fatalf("error %v", err)
	}
}
