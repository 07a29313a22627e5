package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
)

// results is an ordered list of named figures.
type results struct {
	mode           string
	command        string
	serverCommands []string // one per node
	rows           []resultRow
}

type resultRow struct {
	key, label string
	value      any
	unit       string
}

func (r *results) add(key, label string, value any, unit string) {
	r.rows = append(r.rows, resultRow{key, label, value, unit})
}

// serverCommand is node 0's command line, the only one of a single node.
func (r *results) serverCommand() string {
	if len(r.serverCommands) == 0 {
		return ""
	}
	return r.serverCommands[0]
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func (r *results) print(w io.Writer, asJSON bool) error {
	if asJSON {
		// An object with its keys in insertion order.
		var b bytes.Buffer
		b.WriteString("{\n")
		write := func(k string, v any, last bool) error {
			kb, _ := json.Marshal(k)
			vb, err := json.Marshal(v)
			if err != nil {
				return err
			}
			sep := ","
			if last {
				sep = ""
			}
			fmt.Fprintf(&b, "  %s: %s%s\n", kb, vb, sep)
			return nil
		}
		_ = write("bench", r.mode, false)
		_ = write("command", r.command, false)
		_ = write("server_command", r.serverCommand(), false)
		if len(r.serverCommands) > 1 {
			_ = write("server_commands", r.serverCommands, false)
		}
		for i, row := range r.rows {
			if err := write(row.key, row.value, i == len(r.rows)-1); err != nil {
				return err
			}
		}
		b.WriteString("}\n")
		_, err := w.Write(b.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "command:\t%s\n", r.command)
	if len(r.serverCommands) > 1 {
		for k, c := range r.serverCommands {
			fmt.Fprintf(tw, "server %d:\t%s\n", k, c)
		}
	} else {
		fmt.Fprintf(tw, "server:\t%s\n", r.serverCommand())
	}
	for _, row := range r.rows {
		v := row.value
		if f, ok := v.(float64); ok {
			v = strconv.FormatFloat(f, 'f', -1, 64)
		}
		fmt.Fprintf(tw, "%s\t%v %s\n", row.label, v, row.unit)
	}
	return tw.Flush()
}
