package handlers

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"presencestats"
)

// Roles carried in tokens.
const (
	RoleAdmin = "admin"
	RoleUser  = "user"
)

// Claims are what a token says about its bearer.
type Claims struct {
	UserID uuid.UUID
	Role   string
	Expiry time.Time
}

// TokenAuthority mints and verifies HS256 JWTs (claims sub = user UUID, role, exp, iat).
type TokenAuthority struct {
	secret []byte
	Now    func() time.Time
}

// NewTokenAuthority returns an authority for secret.
func NewTokenAuthority(secret string) *TokenAuthority {
	return &TokenAuthority{secret: []byte(secret), Now: time.Now}
}

type jwtClaims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// Mint returns a signed token for user with role, valid for ttl.
func (a *TokenAuthority) Mint(user uuid.UUID, role string, ttl time.Duration) (string, error) {
	if role != RoleAdmin && role != RoleUser {
		return "", presencestats.Errorf(presencestats.EINVALID, "role %q is not admin or user", role)
	}
	if ttl <= 0 {
		return "", presencestats.Errorf(presencestats.EINVALID, "ttl must be positive")
	}
	now := a.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwtClaims{
		Role: role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user.String(),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	})
	s, err := tok.SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// Verify checks a token's signature (HS256 only: "none" and other algorithms are refused) and
// expiry. It returns EUNAUTHORIZED with a message saying what is wrong.
func (a *TokenAuthority) Verify(token string) (Claims, error) {
	var c jwtClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(a.Now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, presencestats.Errorf(presencestats.EUNAUTHORIZED, "token expired")
	case err != nil:
		return Claims{}, presencestats.Wrap(presencestats.EUNAUTHORIZED, err, "invalid token")
	}
	user, err := uuid.Parse(c.Subject)
	if err != nil || user == uuid.Nil {
		return Claims{}, presencestats.Errorf(presencestats.EUNAUTHORIZED, "token subject is not a user UUID")
	}
	if c.Role != RoleAdmin && c.Role != RoleUser {
		return Claims{}, presencestats.Errorf(presencestats.EUNAUTHORIZED, "token role %q is unknown", c.Role)
	}
	return Claims{UserID: user, Role: c.Role, Expiry: c.ExpiresAt.Time}, nil
}

const claimsKey = "presencestats.claims"

// bearerToken returns the token of a request: the Authorization header, or the access_token
// query parameter (browsers cannot set headers on a WebSocket).
func bearerToken(c *gin.Context) string {
	if h := c.GetHeader("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return c.Query("access_token")
}

// authenticate verifies the request's token and stores its claims in the context.
func (a *TokenAuthority) authenticate(c *gin.Context) (Claims, error) {
	tok := bearerToken(c)
	if tok == "" {
		return Claims{}, presencestats.Errorf(presencestats.EUNAUTHORIZED, "missing token: send Authorization: Bearer <jwt> or access_token")
	}
	claims, err := a.Verify(tok)
	if err != nil {
		return Claims{}, err
	}
	c.Set(claimsKey, claims)
	return claims, nil
}

// ClaimsOf returns the claims stored by the auth middleware.
func ClaimsOf(c *gin.Context) Claims {
	v, _ := c.Get(claimsKey)
	cl, _ := v.(Claims)
	return cl
}
