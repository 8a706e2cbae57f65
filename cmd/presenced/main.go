// Command presenced is the presence-stats service: `presenced serve` (the default) runs the HTTP
// and WebSocket server, `presenced migrate` applies the schema, `presenced token` mints a JWT.
// This package only wires: configuration -> logger -> pool/redis -> storage -> handlers -> server.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  presenced [serve]                          run the server
  presenced migrate up|down|status|redo     manage the schema (goose, embedded migrations)
  presenced token --user UUID [--role admin|user] [--ttl 24h]
                                             print a JWT signed with JWT_SECRET
Settings come from environment variables; see README.md.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "presenced:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := LoadConfig(lookupEnv)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, newLogger(cfg, stderr))
	case "migrate":
		cfg, err := LoadConfig(lookupEnv)
		if err != nil {
			return err
		}
		return migrate(ctx, cfg, args, stdout)
	case "token":
		cfg, err := LoadConfig(lookupEnv)
		if err != nil {
			return err
		}
		return token(cfg, args, stdout)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
