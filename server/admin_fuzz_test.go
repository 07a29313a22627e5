package server

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard"
)

func validSample() nodeSample {
	return nodeSample{V: sampleVersion, Node: "n1", TS: 1, Connections: 3, Users: 2, Rooms: 1, In: 1.5, Out: 3,
		Drops: map[string]float64{"slow_consumer": 1}, Cutoffs: 0.5,
		Totals: sampleTotals{In: 10, Out: 20, Drops: map[string]uint64{"closed": 2}, Cutoffs: 1},
		Top:    []switchboard.RoomCount{{Room: "r", Users: 2}}}
}

func TestDecodeNodeSample(t *testing.T) {
	good, _ := json.Marshal(validSample())
	if s, err := decodeNodeSample("n1", good); err != nil || s.Connections != 3 || s.Top[0].Room != "r" {
		t.Fatalf("a valid sample: %+v, %v", s, err)
	}
	tests := map[string]func(*nodeSample){
		"version":        func(s *nodeSample) { s.V = 2 },
		"negative":       func(s *nodeSample) { s.Connections = -1 },
		"negative rate":  func(s *nodeSample) { s.Out = -1 },
		"unknown reason": func(s *nodeSample) { s.Drops["made_up"] = 1 },
		"unknown total":  func(s *nodeSample) { s.Totals.Drops["made_up"] = 1 },
		"empty room":     func(s *nodeSample) { s.Top[0].Room = "" },
		"long room":      func(s *nodeSample) { s.Top[0].Room = strings.Repeat("r", 300) },
		"too many rooms": func(s *nodeSample) {
			for range adminTopRooms {
				s.Top = append(s.Top, switchboard.RoomCount{Room: "x", Users: 1})
			}
		},
	}
	for name, spoil := range tests {
		s := validSample()
		spoil(&s)
		b, _ := json.Marshal(s)
		if _, err := decodeNodeSample("n1", b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeNodeSample("n2", good); err == nil {
		t.Error("a sample naming another node than its sender was accepted")
	}
	if _, err := decodeNodeSample("n1", []byte("{")); err == nil {
		t.Error("bad JSON accepted")
	}
}

// A sample from the broker never panics the node, and what is accepted
// is within bounds.
func FuzzDecodeNodeSample(f *testing.F) {
	good, _ := json.Marshal(validSample())
	f.Add(good)
	f.Add([]byte(`{"v":1,"node":"n1"}`))
	f.Add([]byte(`{"v":1,"node":"n1","top":[{"room":"a","users":-1}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeNodeSample("n1", b)
		if err != nil {
			return
		}
		if s.Node != "n1" || len(s.Top) > adminTopRooms || s.Connections < 0 || s.In < 0 {
			t.Fatalf("accepted out of bounds: %+v", s)
		}
	})
}

// A session cookie is attacker input: verify never panics and accepts
// only tickets the signer issued.
func FuzzVerifyTicket(f *testing.F) {
	ts := newTicketSigner([]string{"k"})
	now := time.Unix(1_800_000_000, 0)
	f.Add(ts.issue(0, now.Add(time.Hour)))
	f.Add("")
	f.Add(".")
	f.Add("AAAAAGsXUgNNS_ocABJLuZKUbr2e8EoY.zN84nHnkSShjme9UFMhCg7ODxZq2zFjLRl0P6BLVDds")
	enc := base64.RawURLEncoding
	f.Fuzz(func(t *testing.T, s string) {
		if !ts.verify(s, now) {
			return
		}
		// Only the signer's own spelling of a payload it signed passes.
		p, _, _ := strings.Cut(s, ".")
		payload, err := enc.DecodeString(p)
		if err != nil || enc.EncodeToString(payload)+"."+enc.EncodeToString(ts.mac(0, payload)) != s {
			t.Fatalf("accepted a ticket it did not issue: %q", s)
		}
	})
}
