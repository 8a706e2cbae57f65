package main

// What the churn and storm scenarios report: a summary table for people, one JSON object for
// machines (-json).

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"
)

// scenarioResult is what a churn or storm run measured.
type scenarioResult struct {
	Scenario   string  `json:"scenario"`
	Targets    int     `json:"targets"`
	Sources    int     `json:"source_addresses"`
	Population int     `json:"population"`
	Rooms      int     `json:"rooms"`
	Sessions   int     `json:"sessions_planned"`
	Planned    [4]int  `json:"-"`
	HoldRate   float64 `json:"hold_visits_per_s"`
	ChatRate   float64 `json:"chat_per_s"`
	RampS      float64 `json:"ramp_s"`
	HoldS      float64 `json:"hold_s"`
	RunS       float64 `json:"run_s"`
	WindowMS   float64 `json:"window_ms"`

	Connected  int            `json:"connected"`
	PeakLive   int            `json:"peak_live"`
	Ended      map[string]int `json:"ended"`
	Errors     map[string]int `json:"errors"`
	ErrorCount int            `json:"error_count"`

	Joins           int     `json:"joins_measured"`
	LateJoins       int     `json:"late_joins"`
	JoinP50MS       float64 `json:"join_p50_ms"`
	JoinP90MS       float64 `json:"join_p90_ms"`
	JoinP99MS       float64 `json:"join_p99_ms"`
	JoinMaxMS       float64 `json:"join_max_ms"`
	LastJoinToAllMS float64 `json:"last_join_to_all_ms"`

	MessagesSent int     `json:"messages_sent"`
	Deliveries   int     `json:"deliveries"`
	Lost         int     `json:"messages_lost"`
	Duplicated   int     `json:"messages_duplicated"`
	ChatP50MS    float64 `json:"chat_p50_ms"`
	ChatP99MS    float64 `json:"chat_p99_ms"`

	WrongMembers int `json:"members_disagreeing"`
	WrongREST    int `json:"rest_rooms_disagreeing"`
	MaxFrames    int `json:"max_stats_frames_per_member"`
	FramesBound  int `json:"stats_frames_bound"`

	LoadgenCPUS        float64 `json:"loadgen_cpu_s"`
	ServerCPUHoldS     float64 `json:"server_cpu_hold_s"`
	ServerCPUHoldPct   float64 `json:"server_cpu_hold_pct_of_core"`
	HoldWrittenPerS    float64 `json:"collector_hold_written_per_s"`
	MaxOutboxBacklog   float64 `json:"collector_max_backlog"`
	EventsExpected     int     `json:"events_expected,omitempty"`
	EventsConnected    int     `json:"events_connected,omitempty"`
	EventsDisconnected int     `json:"events_disconnected,omitempty"`
	EventsTimeout      int     `json:"events_timeout,omitempty"`
	EventsPerS         float64 `json:"collector_events_per_s,omitempty"`
	CollectorLagS      float64 `json:"collector_lag_s,omitempty"`
}

// fill takes the ledger's counts and latencies.
func (res *scenarioResult) fill(led *ledger) {
	led.mu.Lock()
	joins, msgs := slices.Clone(led.joinLat), slices.Clone(led.msgLat)
	res.PeakLive = led.peakLive
	errs := maps.Clone(led.errors)
	led.mu.Unlock()
	c := led.counters()
	res.Connected = c.connected
	res.Ended = map[string]int{}
	for _, how := range []endMode{endClose, endDrop, endVanish} {
		res.Ended[how.String()] = c.ended[how]
	}
	res.Errors, res.ErrorCount = errs, c.errors
	res.Joins = len(joins)
	slices.Sort(joins)
	res.JoinP50MS, res.JoinP90MS, res.JoinP99MS = ms(pct(joins, .5)), ms(pct(joins, .9)), ms(pct(joins, .99))
	if len(joins) > 0 {
		res.JoinMaxMS = ms(joins[len(joins)-1])
	}
	res.MessagesSent, res.Deliveries, res.Lost, res.Duplicated = int(c.sent), c.delivered, c.lost, c.dups
	slices.Sort(msgs)
	res.ChatP50MS, res.ChatP99MS = ms(pct(msgs, .5)), ms(pct(msgs, .99))
}

// pct is the p-quantile of sorted ds (0 when empty).
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

func (res *scenarioResult) print(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(res)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, a...)...) }
	row("scenario", "%s: %d connections in %d rooms on %d target(s), from %d source address(es)", res.Scenario, res.Population, res.Rooms, res.Targets, res.Sources)
	row("phases", "ramp %.0f s, hold %.0f s (%.1f visits/s), run with settling %.0f s", res.RampS, res.HoldS, res.HoldRate, res.RunS)
	row("sessions", "%d planned (close %d, drop %d, vanish %d, stay %d); %d connected, peak %d live",
		res.Sessions, res.Planned[endClose], res.Planned[endDrop], res.Planned[endVanish], res.Planned[endStay], res.Connected, res.PeakLive)
	row("ended", "close %d, drop (no close frame) %d, vanish (silent, expired by the server) %d", res.Ended["close"], res.Ended["drop"], res.Ended["vanish"])
	row("join -> every member", "p50 %.1f  p90 %.1f  p99 %.1f  max %.1f ms (%d joins; %d not known to all)", res.JoinP50MS, res.JoinP90MS, res.JoinP99MS, res.JoinMaxMS, res.Joins, res.LateJoins)
	row("last join -> every member", "%.1f ms", res.LastJoinToAllMS)
	row("chat fan-out", "p50 %.1f  p99 %.1f ms; %d sent, %d deliveries, %d lost, %d duplicated", res.ChatP50MS, res.ChatP99MS, res.MessagesSent, res.Deliveries, res.Lost, res.Duplicated)
	row("counts vs truth, settled", "%d members and %d REST rooms disagree", res.WrongMembers, res.WrongREST)
	row("online_stats frames", "at most %d per member (window bound %d, %.0f ms window)", res.MaxFrames, res.FramesBound, res.WindowMS)
	row("CPU", "server %.1f s over the hold (%.0f%% of one core); loadgen %.1f s over the run", res.ServerCPUHoldS, res.ServerCPUHoldPct, res.LoadgenCPUS)
	row("collector in the hold", "%.0f events/s written; outbox backlog at most %.0f events", res.HoldWrittenPerS, res.MaxOutboxBacklog)
	if res.EventsExpected > 0 {
		row("collector", "%d connected + %d disconnected (%d timeout) of %d expected; %.0f events/s; caught up %.1f s after the last close",
			res.EventsConnected, res.EventsDisconnected, res.EventsTimeout, res.EventsExpected, res.EventsPerS, res.CollectorLagS)
	}
	row("errors", "%d %v", res.ErrorCount, sortedErrors(res.Errors))
	return tw.Flush()
}

func sortedErrors(m map[string]int) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return out
}
