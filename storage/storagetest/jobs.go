package storagetest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Execer is what RunJob and RefreshAggregate need of a pool or a connection.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// On a real server the job scheduler may be running the same policy when a test runs a job or
// refreshes an aggregate: TimescaleDB then refuses with SQLSTATE 55P03 ("could not refresh
// continuous aggregate ... due to a concurrent refresh"). Tests retry that, and only that, a
// bounded number of times. The local engine has no scheduler and never answers 55P03.
const (
	busyAttempts  = 8
	busyFirstWait = 100 * time.Millisecond
	busyMaxWait   = 3 * time.Second
)

// RunJob runs a TimescaleDB job in the foreground (CALL run_job), as the scheduler would,
// retrying while the scheduler holds the same job's lock (55P03).
func RunJob(ctx context.Context, db Execer, jobID int) error {
	err := retryBusy(ctx, busyAttempts, busyFirstWait, sleepCtx, func(ctx context.Context) error {
		_, err := db.Exec(ctx, `CALL run_job($1)`, jobID)
		return err
	})
	if err != nil {
		return fmt.Errorf("run_job(%d): %w", jobID, err)
	}
	return nil
}

// RefreshAggregate refreshes the continuous aggregate view over [from, to) (nil: open end),
// retrying while a concurrent refresh holds it (55P03).
func RefreshAggregate(ctx context.Context, db Execer, view string, from, to *time.Time) error {
	err := retryBusy(ctx, busyAttempts, busyFirstWait, sleepCtx, func(ctx context.Context) error {
		_, err := db.Exec(ctx, `CALL refresh_continuous_aggregate($1::text::regclass, $2::timestamptz, $3::timestamptz)`, view, from, to)
		return err
	})
	if err != nil {
		return fmt.Errorf("refresh %s: %w", view, err)
	}
	return nil
}

// retryBusy calls do until it returns anything but SQLSTATE 55P03, at most attempts times,
// waiting first, 2*first, ... (at most busyMaxWait) in between.
func retryBusy(ctx context.Context, attempts int, first time.Duration, sleep func(context.Context, time.Duration) error,
	do func(context.Context) error) error {
	wait := first
	var err error
	for i := 0; i < attempts; i++ {
		if err = do(ctx); !isBusy(err) {
			return err
		}
		if i == attempts-1 {
			break
		}
		if serr := sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (gave up waiting: %w)", err, serr)
		}
		wait = min(2*wait, busyMaxWait)
	}
	return fmt.Errorf("still busy after %d attempts: %w", attempts, err)
}

func isBusy(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55P03"
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
