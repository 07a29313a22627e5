package config

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestBoolFlagForms(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{[]string{"--webhook-room-events"}, nil, true},
		{[]string{"--webhook-room-events=false"}, map[string]string{"SWITCHBOARD_WEBHOOK_ROOM_EVENTS": "true"}, false},
		{[]string{"--webhook-room-events=1"}, nil, true},
		{nil, map[string]string{"SWITCHBOARD_WEBHOOK_ROOM_EVENTS": "FALSE"}, false},
		{nil, map[string]string{"SWITCHBOARD_WEBHOOK_ROOM_EVENTS": " true "}, true},
	}
	for _, tt := range tests {
		if got := mustLoad(t, tt.args, tt.env).WebhookRoomEvents; got != tt.want {
			t.Errorf("Load(%q, %v): webhook-room-events = %v, want %v", tt.args, tt.env, got, tt.want)
		}
	}
	_, err := Load([]string{"--webhook-room-events=yes"}, nil, nil)
	wantErr(t, err, `--webhook-room-events: invalid boolean "yes" (use true or false)`)
	_, err = Load([]string{"--config=" + writeYAML(t, "webhook-room-events: [true]\n")}, nil, nil)
	wantErr(t, err, `key "webhook-room-events"`, "single bool value")
}

func TestWebhookSecretAndURLRedacted(t *testing.T) {
	c := mustLoad(t, []string{"--webhook-url=https://hook:url-password@app.example/h", "--webhook-room-events"},
		map[string]string{"SWITCHBOARD_WEBHOOK_SECRET": "webhook-signing-secret"})
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", c)
	out := buf.String() + c.String()
	for _, s := range []string{"webhook-signing-secret", "url-password"} {
		if strings.Contains(out, s) {
			t.Errorf("log output contains secret %q: %s", s, out)
		}
	}
	for _, want := range []string{`"webhook-secret":"[redacted]"`, `"webhook-room-events":true`, `"webhook-max-age":"5m0s"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log output lacks %s: %s", want, buf.String())
		}
	}
	// The URL is not repeated in validation errors (it may hold credentials).
	_, err := Load([]string{"--webhook-url=ftp://u:url-password@h/x"}, nil, nil)
	wantErr(t, err, "--webhook-url must be an http:// or https:// URL", "--webhook-secret")
	if strings.Contains(err.Error(), "url-password") {
		t.Errorf("error contains the URL's password: %v", err)
	}
}
