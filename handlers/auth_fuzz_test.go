package handlers_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"presencestats"
	"presencestats/handlers"
)

const fuzzSecret = "fuzz-secret-0123456789abcdef"

// fuzzNow is the fuzzed authority's clock: half a second past a whole second, so that a token's
// whole-second exp or nbf is never exactly now.
var fuzzNow = time.Unix(1767225600, 500_000_000)

func fuzzAuthority() *handlers.TokenAuthority {
	a := handlers.NewTokenAuthority(fuzzSecret)
	a.Now = func() time.Time { return fuzzNow }
	return a
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signed returns header.claims.signature with the signature made by mac over the first two.
func signed(header, claims []byte, mac func() hash.Hash, key string) string {
	s := b64(header) + "." + b64(claims)
	if mac == nil {
		return s + "."
	}
	m := hmac.New(mac, []byte(key))
	m.Write([]byte(s))
	return s + "." + b64(m.Sum(nil))
}

// refused checks that err is the 401 Verify must answer every bad token with.
func refused(t *testing.T, tok string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%q: accepted", tok)
	}
	if got := handlers.ErrorStatus(err); got != http.StatusUnauthorized {
		t.Fatalf("%q: %v -> status %d, want 401", tok, err, got)
	}
	if msg := presencestats.ErrorMessage(err); strings.Contains(msg, fuzzSecret) || msg == "" {
		t.Fatalf("%q: message %q", tok, msg)
	}
}

// genuine is the independent judge of an accepted token: three segments, an HS256 header, an
// HMAC-SHA256 signature by the secret, a user UUID, a known role and an exp after now.
func genuine(t *testing.T, tok string, c handlers.Claims) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q: accepted with %d segments", tok, len(parts))
	}
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%q: accepted with a segment that is not base64url: %v", tok, err)
		}
		return b
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(dec(parts[0]), &h); err != nil || h.Alg != "HS256" {
		t.Fatalf("%q: accepted with header %s (%v)", tok, dec(parts[0]), err)
	}
	m := hmac.New(sha256.New, []byte(fuzzSecret))
	m.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(m.Sum(nil), dec(parts[2])) {
		t.Fatalf("%q: accepted without the secret's signature", tok)
	}
	if c.UserID == uuid.Nil || (c.Role != handlers.RoleAdmin && c.Role != handlers.RoleUser) || !c.Expiry.After(fuzzNow) {
		t.Fatalf("%q: accepted with claims %+v", tok, c)
	}
}

// FuzzVerifyToken gives Verify any string: garbage, and minted tokens the fuzzer mutates (a
// forged signature, a changed claim, a swapped alg). It must refuse with 401 whatever the secret
// did not sign, never panic, and accept only what genuine agrees with.
func FuzzVerifyToken(f *testing.F) {
	a := fuzzAuthority()
	user := uuid.MustParse("3f2c8a8e-55a1-4c39-9b1e-0d7f3c2a9b10")
	for _, role := range []string{handlers.RoleAdmin, handlers.RoleUser} {
		tok, err := a.Mint(user, role, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		f.Add(tok[:len(tok)-1])
		f.Add(tok + "x")
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".")
		f.Add(b64([]byte(`{"alg":"HS512","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2])
	}
	for _, s := range []string{"", ".", "..", "a.b.c", "Bearer x", "\x00", "eyJ.eyJ.", strings.Repeat("A", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := a.Verify(tok)
		if err != nil {
			refused(t, tok, err)
			return
		}
		genuine(t, tok, c)
	})
}

// FuzzTokenClaims builds tokens field by field: any alg in the header, any sub, role, exp and
// nbf, signed with HMAC-SHA256, -384 or -512, by the right or a wrong key, or not at all. The
// oracle says which must pass; the others must be refused with 401 ("token expired" for a token
// whose only fault is its exp). A token minted from the same fields round-trips through Verify.
func FuzzTokenClaims(f *testing.F) {
	now := fuzzNow.Unix()
	sub := "3f2c8a8e-55a1-4c39-9b1e-0d7f3c2a9b10"
	f.Add("HS256", sub, "admin", true, now+3600, false, int64(0), uint8(0), false)
	f.Add("HS256", sub, "user", true, now-1, false, int64(0), uint8(0), false)     // expired
	f.Add("HS256", sub, "user", true, now, false, int64(0), uint8(0), false)       // exp a half second ago
	f.Add("HS256", sub, "user", true, now+1, true, now+1, uint8(0), false)         // not valid yet
	f.Add("HS256", sub, "user", false, int64(0), false, int64(0), uint8(0), false) // no exp
	f.Add("none", sub, "admin", true, now+3600, false, int64(0), uint8(3), false)
	f.Add("HS512", sub, "admin", true, now+3600, false, int64(0), uint8(2), false)
	f.Add("HS256", sub, "admin", true, now+3600, false, int64(0), uint8(2), false) // alg says 256, signed 512
	f.Add("RS256", sub, "admin", true, now+3600, false, int64(0), uint8(0), false)
	f.Add("HS256", sub, "admin", true, now+3600, false, int64(0), uint8(0), true) // wrong key
	f.Add("HS256", sub, "root", true, now+3600, false, int64(0), uint8(0), false)
	f.Add("HS256", "00000000-0000-0000-0000-000000000000", "user", true, now+3600, false, int64(0), uint8(0), false)
	f.Add("HS256", "alice", "user", true, now+3600, false, int64(0), uint8(0), false)
	f.Add("HS256", sub, "user", true, int64(1<<62), false, int64(0), uint8(0), false)
	f.Fuzz(func(t *testing.T, alg, sub, role string, hasExp bool, exp int64, hasNbf bool, nbf int64, sigKind uint8, wrongKey bool) {
		a := fuzzAuthority()
		header, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT"})
		claims := map[string]any{"sub": sub, "role": role, "iat": now}
		if hasExp {
			claims["exp"] = exp
		}
		if hasNbf {
			claims["nbf"] = nbf
		}
		body, err := json.Marshal(claims) // strings and numbers: it cannot fail
		if err != nil {
			t.Fatal(err)
		}
		key := fuzzSecret
		if wrongKey {
			key = fuzzSecret + "!"
		}
		var mac func() hash.Hash
		switch sigKind % 4 {
		case 0:
			mac = sha256.New
		case 1:
			mac = sha512.New384
		case 2:
			mac = sha512.New
		}
		tok := signed(header, body, mac, key)
		c, err := a.Verify(tok)

		id, uerr := uuid.Parse(sub)
		wellSigned := alg == "HS256" && sigKind%4 == 0 && !wrongKey
		// jwt reads exp as a float64 number of seconds: beyond 2^53 s it is not exact, and near
		// 2^63 s it wraps to the past. Those tokens may be refused as expired, never accepted as
		// live when their exp is in the past.
		farExp := exp > 1<<53 || exp < -(1<<53)
		live := hasExp && time.Unix(exp, 0).After(fuzzNow)
		started := !hasNbf || !fuzzNow.Before(time.Unix(nbf, 0))
		goodClaims := uerr == nil && id != uuid.Nil && (role == handlers.RoleAdmin || role == handlers.RoleUser) && started
		want := wellSigned && goodClaims && live
		switch {
		case err == nil && !want:
			t.Fatalf("%s: accepted %+v; alg %q sig %d wrongKey %v sub %q role %q exp %v/%d nbf %v/%d",
				tok, c, alg, sigKind%4, wrongKey, sub, role, hasExp, exp, hasNbf, nbf)
		case err == nil:
			genuine(t, tok, c)
			if c.UserID != id || c.Role != role || (!farExp && c.Expiry.Unix() != exp) {
				t.Fatalf("%s: claims %+v, want %s %s exp %d", tok, c, id, role, exp)
			}
		case want && !farExp:
			t.Fatalf("%s: refused a good token: %v", tok, err)
		default:
			refused(t, tok, err)
			expiredOnly := wellSigned && goodClaims && hasExp && !live
			if expiredOnly && !farExp && presencestats.ErrorMessage(err) != "token expired" {
				t.Fatalf("%s: expired token refused with %q", tok, presencestats.ErrorMessage(err))
			}
		}

		// Round trip: Mint with the same user and role, valid for ttl, gives them back.
		if uerr != nil || id == uuid.Nil {
			return
		}
		ttl := time.Duration(exp%(1<<40)) * time.Millisecond
		minted, err := a.Mint(id, role, ttl)
		if role != handlers.RoleAdmin && role != handlers.RoleUser || ttl <= 0 {
			if err == nil || handlers.ErrorStatus(err) != http.StatusBadRequest {
				t.Fatalf("Mint(%q, %v) = %v, want 400", role, ttl, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Mint(%q, %v): %v", role, ttl, err)
		}
		got, err := a.Verify(minted)
		wantLive := fuzzNow.Add(ttl).Truncate(time.Second).After(fuzzNow)
		switch {
		case err != nil && wantLive:
			t.Fatalf("minted %s (ttl %v) refused: %v", minted, ttl, err)
		case err == nil && (got.UserID != id || got.Role != role || !got.Expiry.Equal(fuzzNow.Add(ttl).Truncate(time.Second))):
			t.Fatalf("minted for %s %s ttl %v, verified %+v", id, role, ttl, got)
		}
	})
}
