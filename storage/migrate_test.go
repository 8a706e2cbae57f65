package storage_test

import (
	"context"
	"testing"
	"time"

	"presencestats/storage"
	"presencestats/storage/storagetest"
)

func TestMigrationsUpDownUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool := storagetest.Connect(t, storagetest.FreshDatabase(t), false)
	p, db, err := storage.NewMigrator(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up: %v", err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM timescaledb_information.hypertables`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if got, want := n, 0; got != want {
		t.Fatalf("hypertables after down: got %d, want %d", got, want)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sources := p.ListSources()
	if got, want := v, sources[len(sources)-1].Version; got != want {
		t.Fatalf("version after up: got %d, want %d", got, want)
	}
}
