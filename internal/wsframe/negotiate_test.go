package wsframe

import "testing"

const accepted = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

func TestNegotiateDeflate(t *testing.T) {
	cases := []struct {
		name   string
		offers []string
		want   string // "" declines
		bits   int
	}{
		{"none", nil, "", 0},
		{"other extension", []string{"x-webkit-deflate-frame"}, "", 0},
		{"chromium", []string{"permessage-deflate; client_max_window_bits"}, accepted, 15},
		{"firefox", []string{"permessage-deflate"}, accepted, 15},
		{"case and spaces", []string{" PerMessage-Deflate ;Client_No_Context_Takeover\t"}, accepted, 15},
		// The offers of Autobahn|Testsuite's cases 13.1 to 13.7.
		{"13.1", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits"}, accepted, 15},
		{"13.2", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover"}, accepted, 15},
		{"13.3", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=8"}, accepted + "; server_max_window_bits=8", 8},
		{"13.4", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_max_window_bits=15"}, accepted + "; server_max_window_bits=15", 15},
		{"13.5", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8"}, accepted + "; server_max_window_bits=8", 8},
		{"13.7", []string{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8, permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover, permessage-deflate; client_no_context_takeover; client_max_window_bits"}, accepted + "; server_max_window_bits=8", 8},
		{"quoted value", []string{`permessage-deflate; server_max_window_bits="10"`}, accepted + "; server_max_window_bits=10", 10},
		{"client bits with value", []string{"permessage-deflate; client_max_window_bits=9"}, accepted, 15},
		{"several headers", []string{"foo", "permessage-deflate; server_max_window_bits=9"}, accepted + "; server_max_window_bits=9", 9},
		// Offers that must be declined, and the next one taken instead.
		{"bad offer then good", []string{"permessage-deflate; server_max_window_bits=7, permessage-deflate"}, accepted, 15},
		{"unknown param then good", []string{"permessage-deflate; foo=1", "permessage-deflate; server_max_window_bits=12"}, accepted + "; server_max_window_bits=12", 12},
		{"bits 16", []string{"permessage-deflate; server_max_window_bits=16"}, "", 0},
		{"bits leading zero", []string{"permessage-deflate; server_max_window_bits=09"}, "", 0},
		{"bits not a number", []string{"permessage-deflate; client_max_window_bits=x"}, "", 0},
		{"server bits without value", []string{"permessage-deflate; server_max_window_bits"}, "", 0},
		{"no_context_takeover with value", []string{"permessage-deflate; server_no_context_takeover=1"}, "", 0},
		{"duplicate param", []string{"permessage-deflate; client_max_window_bits; client_max_window_bits"}, "", 0},
		{"unknown param", []string{"permessage-deflate; client_window=5"}, "", 0},
		// Headers that do not parse decline everything in them.
		{"missing param name", []string{"permessage-deflate; ; client_max_window_bits"}, "", 0},
		{"unterminated quote", []string{`permessage-deflate; server_max_window_bits="10`}, "", 0},
		{"quoted non-token", []string{`permessage-deflate; server_max_window_bits="1 0"`}, "", 0},
		{"garbage after extension", []string{"permessage-deflate foo"}, "", 0},
		{"malformed header after good offer", []string{"permessage-deflate", "=;"}, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := NegotiateDeflate(tc.offers)
			if ok != (tc.want != "") || d.Response != tc.want || (ok && d.WindowBits != tc.bits) {
				t.Fatalf("got %+v %v, want %q bits %d", d, ok, tc.want, tc.bits)
			}
		})
	}
}
