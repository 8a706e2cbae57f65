package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"presencestats"
)

// devTokenTTL is how long a development token lives: a working day.
const devTokenTTL = 12 * time.Hour

// devUserNamespace derives a development user id from a display name (UUIDv5), so the same name
// in two tabs is one user with two sessions: the chat page then shows users and tabs apart.
// Anyone can claim any name: this exists only with DEV_MODE=1.
const devUserNamespace = "6f1c1f0e-5b8a-4a53-9d51-0c2a4f7e2d11"

type devTokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

type devTokenResponse struct {
	Token     string    `json:"token"`
	UserID    uuid.UUID `json:"user_id"`
	Role      string    `json:"role"`
	Name      string    `json:"name,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// devToken mints a token for the pages during development: POST /dev/token with an optional
// body {"name": "...", "role": "user"|"admin"}. Registered only when DEV_MODE=1.
func (p *WebPages) devToken(c *gin.Context) {
	var req devTokenRequest
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 4096))
	if err != nil {
		writeError(c, p.log, presencestats.Errorf(presencestats.ETOOLARGE, "body larger than 4096 bytes"))
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := jsonUnmarshalStrict(body, &req); err != nil {
			writeError(c, p.log, presencestats.Errorf(presencestats.EINVALID, "body: %s (want {\"name\": \"...\", \"role\": \"user\"|\"admin\"})", err))
			return
		}
	}
	req.Name = strings.TrimSpace(req.Name)
	if utf8.RuneCountInString(req.Name) > 64 {
		writeError(c, p.log, presencestats.Errorf(presencestats.EINVALID, "name: at most 64 characters"))
		return
	}
	if req.Role == "" {
		req.Role = RoleUser
	}
	if req.Role != RoleUser && req.Role != RoleAdmin {
		writeError(c, p.log, presencestats.Errorf(presencestats.EINVALID, "role: %q is not user or admin", req.Role))
		return
	}
	user := uuid.New()
	if req.Name != "" {
		user = uuid.NewSHA1(uuid.MustParse(devUserNamespace), []byte(strings.ToLower(req.Name)))
	}
	tok, err := p.auth.Mint(user, req.Role, devTokenTTL)
	if err != nil {
		writeError(c, p.log, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.JSON(http.StatusOK, devTokenResponse{
		Token: tok, UserID: user, Role: req.Role, Name: req.Name, ExpiresAt: p.auth.Now().Add(devTokenTTL).UTC(),
	})
}

// jsonUnmarshalStrict decodes one JSON object into v, refusing unknown fields and trailing data.
func jsonUnmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Anything but the end of the input after the object, a stray "}" included (which
	// Decoder.More does not count as more), is refused.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}
