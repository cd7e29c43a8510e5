package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// readyStates prints, below queue-summary's ready queue table, the ready
// queues that are suspended (suspend-ready-q) or in a state that holds
// delivery back (ready-q-states), as KumoMTA's queue-summary does. A
// daemon that does not answer these endpoints just gets no such lines.
func readyStates(ctx context.Context, c *client, w io.Writer, keep func(name string) bool) {
	var lines []string
	if b, err := c.do(ctx, "GET", "/api/admin/suspend-ready-q/v1", nil); err == nil {
		var list []struct {
			Name, Reason, Duration string
		}
		if json.Unmarshal(b, &list) == nil {
			for _, s := range list {
				if keep(s.Name) {
					lines = append(lines, fmt.Sprintf("%s: suspended for %s: %s", s.Name, s.Duration, s.Reason))
				}
			}
		}
	}
	if b, err := c.do(ctx, "GET", "/api/admin/ready-q-states/v1", nil); err == nil {
		var resp struct {
			States map[string]map[string]struct {
				Context string `json:"context"`
				Since   string `json:"since"`
			} `json:"states_by_ready_queue"`
		}
		if json.Unmarshal(b, &resp) == nil {
			for name, states := range resp.States {
				if !keep(name) {
					continue
				}
				for state, s := range states {
					lines = append(lines, fmt.Sprintf("%s: %s: %s (since %s)", name, state, s.Context, s.Since))
				}
			}
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}
