package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := mustLoad(t, nil, nil)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"addr", c.Addr, "127.0.0.1:8080"},
		{"auth", c.Auth, "none"},
		{"jwt-secret", c.JWTSecret, ""},
		{"jwt-public-key", c.JWTPublicKey, ""},
		{"jwks-file", c.JWKSFile, ""},
		{"jwt-leeway", c.JWTLeeway, 30 * time.Second},
		{"jwt-issuer", c.JWTIssuer, ""},
		{"jwt-audience", c.JWTAudience, ""},
		{"tls-cert", c.TLSCert, ""},
		{"tls-key", c.TLSKey, ""},
		{"api-key", c.APIKeys, []string(nil)},
		{"allowed-origins", c.AllowedOrigins, []string(nil)},
		{"ping-interval", c.PingInterval, 25 * time.Second},
		{"pong-timeout", c.PongTimeout, 10 * time.Second},
		{"max-message-bytes", c.MaxMessageBytes, 65536},
		{"rate", c.Rate, 20.0},
		{"burst", c.Burst, 40},
		{"max-conns-per-user", c.MaxConnsPerUser, 8},
		{"per-user-policy", c.PerUserPolicy, "reject"},
		{"max-conns", c.MaxConns, 100000},
		{"max-rooms", c.MaxRooms, 64},
		{"max-data-bytes", c.MaxDataBytes, 0},
		{"read-only-rooms", c.ReadOnlyRooms, []string(nil)},
		{"history-rooms", c.HistoryRooms, []string(nil)},
		{"history-users", c.HistoryUsers, false},
		{"history-size", c.HistorySize, 100},
		{"history-ttl", c.HistoryTTL, 5 * time.Minute},
		{"handshake-rate", c.HandshakeRate, 20.0},
		{"handshake-burst", c.HandshakeBurst, 50},
		{"handshake-timeout", c.HandshakeTimeout, 10 * time.Second},
		{"queue-bytes", c.QueueBytes, 1048576},
		{"write-timeout", c.WriteTimeout, 5 * time.Second},
		{"compression", c.Compression, false},
		{"sse", c.SSE, true},
		{"compression-threshold", c.CompressionThreshold, 256},
		{"shutdown-timeout", c.ShutdownTimeout, 10 * time.Second},
		{"broker", c.Broker, "memory"},
		{"redis-url", c.RedisURL, "redis://127.0.0.1:6379/0"},
		{"nats-url", c.NATSURL, "nats://127.0.0.1:4222"},
		{"history-replicas", c.HistoryReplicas, 1},
		{"presence-ttl", c.PresenceTTL, 30 * time.Second},
		{"cluster-name", c.ClusterName, ""},
		{"log-level", c.LogLevel, "info"},
		{"log-format", c.LogFormat, "json"},
		{"config", c.ConfigFile, ""},
		{"pprof", c.PprofAddr, ""},
		{"admin", c.Admin, false},
		{"admin-key", c.AdminKeys, []string(nil)},
		{"webhook-url", c.WebhookURL, ""},
		{"webhook-secret", c.WebhookSecret, ""},
		{"webhook-max-age", c.WebhookMaxAge, 5 * time.Minute},
		{"webhook-room-events", c.WebhookRoomEvents, false},
	}
	covered := map[string]bool{"node-id": true}
	for _, tt := range tests {
		covered[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("default %s = %#v, want %#v", tt.name, tt.got, tt.want)
			}
		})
	}
	for _, f := range Flags() {
		if !covered[f.Name] {
			t.Errorf("flag %s has no default test", f.Name)
		}
	}
	if !regexp.MustCompile(`^.+-[0-9a-f]{6}$`).MatchString(c.NodeID) {
		t.Errorf("default node-id %q is not host-<6 hex>", c.NodeID)
	}
	if other := mustLoad(t, nil, nil); other.NodeID == c.NodeID {
		t.Errorf("two default node-ids are both %q; want a random suffix", c.NodeID)
	}
}

func TestFlagsTable(t *testing.T) {
	fs := Flags()
	if len(fs) != 53 {
		t.Errorf("Flags() has %d entries, want 53", len(fs))
	}
	seen := map[string]bool{}
	for _, f := range fs {
		if seen[f.Name] {
			t.Errorf("duplicate flag %s", f.Name)
		}
		seen[f.Name] = true
		wantEnv := "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if f.Env != wantEnv {
			t.Errorf("%s: env %q, want %q", f.Name, f.Env, wantEnv)
		}
		if f.Usage == "" {
			t.Errorf("%s: empty usage", f.Name)
		}
	}
	for name, def := range map[string]string{
		"addr": "127.0.0.1:8080", "jwt-leeway": "30s", "queue-bytes": "1048576",
		"auth": "none on loopback, else jwt", "jwt-secret": "",
	} {
		for _, f := range fs {
			if f.Name == name && f.Default != def {
				t.Errorf("%s: Default %q, want %q", name, f.Default, def)
			}
		}
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var buf bytes.Buffer
			c, err := Load([]string{"--addr=:1", arg}, nil, &buf)
			if !errors.Is(err, flag.ErrHelp) || c != nil {
				t.Fatalf("Load(%s) = %v, %v; want nil, flag.ErrHelp", arg, c, err)
			}
			out := buf.String()
			for _, f := range Flags() {
				if !strings.Contains(out, "--"+f.Name+" ") {
					t.Errorf("usage lacks --%s", f.Name)
				}
				if !strings.Contains(out, f.Env) {
					t.Errorf("usage lacks %s", f.Env)
				}
				if f.Default != "" && !strings.Contains(out, f.Default) {
					t.Errorf("usage lacks default %q of --%s", f.Default, f.Name)
				}
			}
		})
	}
}

func TestHelpDoesNotPrintSecrets(t *testing.T) {
	var buf bytes.Buffer
	env := map[string]string{"SWITCHBOARD_JWT_SECRET": "s3cr3t-env", "SWITCHBOARD_API_KEY": "k3y-env"}
	_, err := Load([]string{"--jwt-secret=s3cr3t-flag", "--api-key=k3y-flag", "--help"}, envMap(env), &buf)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, s := range []string{"s3cr3t", "k3y-"} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("usage contains secret %q", s)
		}
	}
}

func TestLogValueRedactsSecrets(t *testing.T) {
	path := writeYAML(t, "jwt-secret: yaml-secret-value\n")
	c := mustLoad(t, []string{
		"--config=" + path, "--addr=0.0.0.0:8080",
		"--api-key=flag-key-one", "--api-key=flag-key-two", "--admin", "--admin-key=flag-admin-key",
		"--broker=redis", "--redis-url=redis://user:redis-password@db:6379/0",
		"--nats-url=nats://natsuser:nats-password@n1:4222, nats://nats-token@n2:4222,natsuser:nats-password@n3:4222",
		"--allowed-origins=https://a.example,https://b.example",
	}, nil)
	c2 := mustLoad(t, []string{"--addr=0.0.0.0:8080", "--jwt-secret=flag-secret-value"},
		map[string]string{"SWITCHBOARD_API_KEY": "env-key-one,env-key-two"})
	secrets := []string{"yaml-secret-value", "flag-secret-value", "flag-key-one", "flag-key-two",
		"env-key-one", "env-key-two", "flag-admin-key", "redis-password", "nats-password", "nats-token"}

	for i, cfg := range []*Config{c, c2} {
		var jsonBuf, textBuf bytes.Buffer
		slog.New(slog.NewJSONHandler(&jsonBuf, nil)).Info("start", "config", cfg)
		slog.New(slog.NewTextHandler(&textBuf, nil)).Info("start", "config", *cfg)
		renders := map[string]string{
			"json": jsonBuf.String(), "text": textBuf.String(),
			"String": cfg.String(), "%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", *cfg),
			"%#v": fmt.Sprintf("%#v", *cfg),
		}
		for how, out := range renders {
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("config %d %s output contains secret %q: %s", i, how, s, out)
				}
			}
		}
	}

	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", c)
	for _, want := range []string{`"addr":"0.0.0.0:8080"`, `"auth":"jwt"`, `"jwt-secret":"[redacted]"`,
		`"api-key":"2 keys [redacted]"`, `"admin-key":"1 key [redacted]"`, `"allowed-origins":["https://a.example","https://b.example"]`,
		`"max-conns":100000`, `"rate":20`, `"redis-url":"redis://user:xxxxx@db:6379/0"`,
		`"nats-url":"nats://natsuser:xxxxx@n1:4222,nats://xxxxx@n2:4222,natsuser:xxxxx@n3:4222"`, `"node-id":"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log output lacks %s: %s", want, buf.String())
		}
	}
}
