package main

// What the servers say about themselves while a churn or storm scenario runs: their CPU over the
// hold, and their collectors' pace (events written, outbox backlog), from every target's /metrics.

import (
	"context"
	"time"
)

type serverSampler struct {
	bases []string

	cpuHold     float64 // process_cpu_seconds_total over the hold, all targets
	writtenHold float64 // presence_events_written_total over the hold
	holdS       float64
	maxBacklog  float64 // presence_outbox_backlog_events, all targets, highest seen
}

func newServerSampler(bases []string) *serverSampler { return &serverSampler{bases: bases} }

// sum scrapes every target and adds up the named samples.
func (s *serverSampler) sum(ctx context.Context) (map[string]float64, error) {
	out := map[string]float64{}
	for _, b := range s.bases {
		m, err := scrape(ctx, b)
		if err != nil {
			return nil, err
		}
		for _, k := range []string{"process_cpu_seconds_total", "presence_events_written_total", "presence_outbox_backlog_events"} {
			out[k] += m[k]
		}
	}
	return out, nil
}

// run samples every second until stop is called; the hold is [holdFrom, holdTo).
func (s *serverSampler) run(ctx context.Context, holdFrom, holdTo time.Time) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var first map[string]float64
		var firstAt time.Time
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now := time.Now()
			m, err := s.sum(ctx)
			if err != nil {
				continue
			}
			s.maxBacklog = max(s.maxBacklog, m["presence_outbox_backlog_events"])
			switch {
			case now.Before(holdFrom):
			case first == nil:
				first, firstAt = m, now
			case now.Before(holdTo.Add(time.Second)):
				s.holdS = now.Sub(firstAt).Seconds()
				s.cpuHold = m["process_cpu_seconds_total"] - first["process_cpu_seconds_total"]
				s.writtenHold = m["presence_events_written_total"] - first["presence_events_written_total"]
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (s *serverSampler) fill(res *scenarioResult) {
	res.ServerCPUHoldS, res.MaxOutboxBacklog = s.cpuHold, s.maxBacklog
	if s.holdS > 0 {
		res.HoldWrittenPerS = s.writtenHold / s.holdS
		res.ServerCPUHoldPct = 100 * s.cpuHold / s.holdS
	}
}
