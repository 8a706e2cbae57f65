package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/handlers"
)

const testSecret = "test-secret-0123456789"

func mintWithCommand(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"token"}, args...), env(map[string]string{"JWT_SECRET": testSecret}), &out, &errOut)
	if err != nil {
		t.Fatalf("presenced token %v: %v", args, err)
	}
	return strings.TrimSpace(out.String())
}

func TestTokenCommandMintsVerifiableTokens(t *testing.T) {
	user := uuid.New()
	tok := mintWithCommand(t, "--user", user.String(), "--role", "admin", "--ttl", "1h")
	claims, err := handlers.NewTokenAuthority(testSecret).Verify(tok)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if claims.UserID != user || claims.Role != handlers.RoleAdmin {
		t.Fatalf("claims %+v, want user %s role admin", claims, user)
	}
	if d := time.Until(claims.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("expiry in %v, want about 1h", d)
	}
	// Default role is user.
	claims, err = handlers.NewTokenAuthority(testSecret).Verify(mintWithCommand(t, "--user", user.String()))
	if err != nil || claims.Role != handlers.RoleUser {
		t.Fatalf("default role: %+v %v", claims, err)
	}
}

func TestTokenCommandRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--user", "not-a-uuid"},
		{"--user", uuid.Nil.String()},
		{"--user", uuid.NewString(), "--role", "root"},
		{"--user", uuid.NewString(), "--ttl", "-1h"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), append([]string{"token"}, args...), env(map[string]string{"JWT_SECRET": testSecret}), &out, &out); err == nil {
			t.Errorf("token %v: no error", args)
		}
	}
}

func TestVerifyRefusesForgedTokens(t *testing.T) {
	user := uuid.New()
	good := mintWithCommand(t, "--user", user.String(), "--role", "admin")
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString

	other := handlers.NewTokenAuthority("another-secret-0123456789")
	otherTok, err := other.Mint(user, handlers.RoleAdmin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expiredAuth := handlers.NewTokenAuthority(testSecret)
	expiredAuth.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, err := expiredAuth.Mint(user, handlers.RoleAdmin, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"other secret":      otherTok,
		"alg none":          b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".",
		"alg none unsigned": b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1],
		"tampered payload":  parts[0] + "." + b64([]byte(`{"sub":"`+user.String()+`","role":"admin","exp":9999999999}`)) + "." + parts[2],
		"expired":           expired,
		"garbage":           "not.a.jwt",
		"empty":             "",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := handlers.NewTokenAuthority(testSecret).Verify(tok)
			if got, want := presencestats.ErrorCode(err), presencestats.EUNAUTHORIZED; got != want {
				t.Fatalf("code %q (%v), want %q", got, err, want)
			}
		})
	}
}
