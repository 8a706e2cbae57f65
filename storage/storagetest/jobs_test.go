package storagetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestRetryBusy(t *testing.T) {
	busy := &pgconn.PgError{Code: "55P03", Message: "could not refresh continuous aggregate due to a concurrent refresh"}
	other := &pgconn.PgError{Code: "42P01", Message: "relation does not exist"}
	for _, tc := range []struct {
		name      string
		answers   []error // one per call; the last repeats
		wantCalls int
		wantErr   error
		wantWaits []time.Duration
	}{
		{"succeeds at once", []error{nil}, 1, nil, nil},
		{"busy twice then done", []error{busy, busy, nil}, 3, nil, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}},
		{"another error is not retried", []error{other}, 1, other, nil},
		{"busy, then another error", []error{busy, other}, 2, other, []time.Duration{10 * time.Millisecond}},
		{"busy every time: bounded", []error{busy}, 4, busy, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			var waits []time.Duration
			err := retryBusy(context.Background(), 4, 10*time.Millisecond,
				func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
				func(context.Context) error {
					a := tc.answers[min(calls, len(tc.answers)-1)]
					calls++
					return a
				})
			if calls != tc.wantCalls {
				t.Errorf("calls: got %d, want %d", calls, tc.wantCalls)
			}
			if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Errorf("error: got %v, want %v", err, tc.wantErr)
			}
			if len(waits) != len(tc.wantWaits) {
				t.Fatalf("waits: got %v, want %v", waits, tc.wantWaits)
			}
			for i := range waits {
				if waits[i] != tc.wantWaits[i] {
					t.Errorf("waits: got %v, want %v", waits, tc.wantWaits)
				}
			}
		})
	}
}

func TestRetryBusyStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	busy := &pgconn.PgError{Code: "55P03"}
	calls := 0
	err := retryBusy(ctx, 8, time.Hour, sleepCtx, func(context.Context) error { calls++; return busy })
	if calls != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, busy) {
		t.Fatalf("calls %d, err %v: want 1 call and an error naming both the 55P03 and the cancellation", calls, err)
	}
}
