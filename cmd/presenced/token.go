package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"presencestats/handlers"
)

// token prints a JWT for scripts and development.
func token(cfg Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.String("user", "", "user UUID (the token's sub)")
	role := fs.String("role", handlers.RoleUser, "admin or user")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("token: %w (usage: presenced token --user UUID [--role admin|user] [--ttl 24h])", err)
	}
	id, err := uuid.Parse(*user)
	if err != nil || id == uuid.Nil {
		return fmt.Errorf("token: --user must be a non-zero UUID, got %q", *user)
	}
	tok, err := handlers.NewTokenAuthority(cfg.JWTSecret).Mint(id, *role, *ttl)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(out, tok)
	return nil
}
