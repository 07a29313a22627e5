package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// bytesOut sums switchboard_bytes_out_total over the nodes' /metrics.
func (s *session) bytesOut() (int64, error) {
	cl := &http.Client{Timeout: 5 * time.Second}
	var sum int64
	for _, addr := range s.addrs {
		resp, err := cl.Get("http://" + addr + "/metrics")
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("GET /metrics: %w", err)
		}
		found := false
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "switchboard_bytes_out_total{") {
				f := strings.Fields(line)
				v, err := strconv.ParseFloat(f[len(f)-1], 64)
				if err != nil {
					return 0, fmt.Errorf("GET /metrics: %q: %w", line, err)
				}
				sum += int64(v)
				found = true
			}
		}
		if !found {
			return 0, errors.New("GET /metrics: no switchboard_bytes_out_total")
		}
	}
	return sum, nil
}
