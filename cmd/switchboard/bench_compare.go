package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
)

// benchRun is one configuration of a bench: what is measured and where
// it runs.
type benchRun struct {
	label                string
	target               string // targetServer or targetFloor
	serverCPU, clientCPU string // taskset lists; "" for no pinning
}

// plan is the runs a bench makes, in the order of one round.
func (o *benchOpts) plan() ([]benchRun, error) {
	switch {
	case o.scaling && o.target != targetServer:
		return nil, fmt.Errorf("--scaling measures the server: leave --target at %q", targetServer)
	case o.scaling:
		// The 2-core run leaves the clients unpinned: they share both cores
		// with the server, as on any host that runs its own load.
		return []benchRun{
			{label: "1 core", target: targetServer, serverCPU: "0", clientCPU: o.clientCPU},
			{label: "2 cores", target: targetServer, serverCPU: "0,1", clientCPU: ""},
		}, nil
	case o.target == targetBoth:
		return []benchRun{
			{label: targetFloor, target: targetFloor, serverCPU: o.serverCPU, clientCPU: o.clientCPU},
			{label: targetServer, target: targetServer, serverCPU: o.serverCPU, clientCPU: o.clientCPU},
		}, nil
	case o.target == targetServer || o.target == targetFloor:
		return []benchRun{{label: o.target, target: o.target, serverCPU: o.serverCPU, clientCPU: o.clientCPU}}, nil
	}
	return nil, fmt.Errorf("--target must be %q, %q or %q, not %q", targetServer, targetFloor, targetBoth, o.target)
}

// comparison is the results of several runs, each over several rounds.
type comparison struct {
	mode, command string
	labels        []string
	rounds        map[string][]*results // by label, in round order
}

// median is a run's median value of key over its rounds, and whether the
// key is numeric; otherwise its first round's value.
func (c *comparison) median(label, key string) (any, bool) {
	var nums []float64
	var first any
	for _, r := range c.rounds[label] {
		for _, row := range r.rows {
			if row.key != key {
				continue
			}
			if first == nil {
				first = row.value
			}
			if f, ok := toFloat(row.value); ok {
				nums = append(nums, f)
			}
		}
	}
	if len(nums) == 0 {
		return first, false
	}
	slices.Sort(nums)
	m := nums[len(nums)/2]
	if len(nums)%2 == 0 {
		m = (nums[len(nums)/2-1] + nums[len(nums)/2]) / 2
	}
	return round(m, 3), true
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// rows are the keys, labels and units of the first run's first round.
func (c *comparison) rows() []resultRow {
	if rs := c.rounds[c.labels[0]]; len(rs) > 0 {
		return rs[0].rows
	}
	return nil
}

// ratio is the last run's median over the first's, for numeric keys.
func (c *comparison) ratio(key string) (float64, bool) {
	a, okA := c.median(c.labels[0], key)
	b, okB := c.median(c.labels[len(c.labels)-1], key)
	if !okA || !okB || len(c.labels) < 2 {
		return 0, false
	}
	fa, fb := a.(float64), b.(float64)
	if fa == 0 {
		return 0, false
	}
	return round(fb/fa, 3), true
}

func (c *comparison) print(w io.Writer, asJSON bool) error {
	n := len(c.rounds[c.labels[0]])
	if asJSON {
		runs := map[string]map[string]any{}
		ratios := map[string]float64{}
		for _, l := range c.labels {
			runs[l] = map[string]any{}
			for _, row := range c.rows() {
				v, _ := c.median(l, row.key)
				runs[l][row.key] = v
			}
		}
		for _, row := range c.rows() {
			if r, ok := c.ratio(row.key); ok {
				ratios[row.key] = r
			}
		}
		var cmds []string
		for _, l := range c.labels {
			for _, r := range c.rounds[l] {
				cmds = append(cmds, r.serverCommand())
			}
		}
		b, err := json.MarshalIndent(map[string]any{
			"bench": c.mode, "command": c.command, "rounds": n, "runs": runs, "order": c.labels,
			"ratio": ratios, "ratio_of": c.labels[len(c.labels)-1] + " / " + c.labels[0], "server_commands": cmds,
		}, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "command:\t%s\n", c.command)
	fmt.Fprintf(tw, "rounds:\t%d (medians; runs alternate within a round)\n", n)
	fmt.Fprintf(tw, "\t")
	for _, l := range c.labels {
		fmt.Fprintf(tw, "%s\t", l)
	}
	fmt.Fprintf(tw, "%s / %s\t\n", c.labels[len(c.labels)-1], c.labels[0])
	for _, row := range c.rows() {
		fmt.Fprintf(tw, "%s\t", row.label)
		for _, l := range c.labels {
			v, _ := c.median(l, row.key)
			if f, ok := v.(float64); ok {
				v = strconv.FormatFloat(f, 'f', -1, 64)
			}
			fmt.Fprintf(tw, "%v %s\t", v, row.unit)
		}
		if r, ok := c.ratio(row.key); ok {
			fmt.Fprintf(tw, "%.3g\t", r)
		} else {
			fmt.Fprintf(tw, "\t")
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// runPlan makes rounds of the planned runs, a fresh set of processes each.
func runPlan(ctx context.Context, o benchOpts, runs []benchRun, mk func() *session,
	run func(context.Context, *session) (*results, error)) (*comparison, error) {
	c := &comparison{rounds: map[string][]*results{}}
	for _, r := range runs {
		c.labels = append(c.labels, r.label)
	}
	for k := 0; k < max(1, o.rounds); k++ {
		for _, br := range runs {
			s := mk()
			s.target = br.target
			s.opts.serverCPU, s.opts.clientCPU = br.serverCPU, br.clientCPU
			s.logf("round %d/%d: %s", k+1, max(1, o.rounds), br.label)
			res, err := run(ctx, s)
			s.close()
			if err != nil {
				return c, fmt.Errorf("round %d, %s: %w", k+1, br.label, err)
			}
			res.serverCommands = s.serverCmds
			c.mode = res.mode
			c.rounds[br.label] = append(c.rounds[br.label], res)
		}
	}
	return c, nil
}
