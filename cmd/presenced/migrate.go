package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"presencestats"
	"presencestats/storage"
)

// migrate runs goose over the embedded migrations: up, down (one step), status, redo.
func migrate(ctx context.Context, cfg Config, args []string, out io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: presenced migrate up|down|status|redo")
	}
	pool, err := storage.OpenPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Before the first statement of a migration: a server that cannot hold the schema is refused
	// with what it lacks, not half-migrated until some SQL function is missing.
	if args[0] == "up" || args[0] == "redo" {
		if err := storage.Preflight(ctx, pool); err != nil {
			if presencestats.ErrorCode(err) == presencestats.EINVALID {
				return errors.New("preflight: " + presencestats.ErrorMessage(err))
			}
			return fmt.Errorf("preflight: %w", err)
		}
	}
	p, db, err := storage.NewMigrator(pool, cfg.ReportTimezone)
	if err != nil {
		return err
	}
	defer db.Close()
	switch args[0] {
	case "up":
		res, err := p.Up(ctx)
		for _, r := range res {
			fmt.Fprintln(out, r)
		}
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		if len(res) == 0 {
			fmt.Fprintln(out, "no migrations to apply: schema is current")
		}
	case "down":
		r, err := p.Down(ctx)
		if r != nil {
			fmt.Fprintln(out, r)
		}
		if err != nil {
			return fmt.Errorf("migrate down: %w", err)
		}
	case "redo":
		r, err := p.Down(ctx)
		if err != nil {
			return fmt.Errorf("migrate redo (down): %w", err)
		}
		fmt.Fprintln(out, r)
		up, err := p.UpByOne(ctx)
		if err != nil {
			return fmt.Errorf("migrate redo (up): %w", err)
		}
		fmt.Fprintln(out, up)
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migrate status: %w", err)
		}
		for _, s := range st {
			applied := "pending"
			if s.State == "applied" {
				applied = "applied " + s.AppliedAt.Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(out, "%5d  %-40s %s\n", s.Source.Version, s.Source.Path, applied)
		}
	default:
		return fmt.Errorf("unknown migrate command %q: want up, down, status or redo", args[0])
	}
	return nil
}
