package handlers

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"presencestats"
)

// statusOf maps application error codes to HTTP statuses: the one place this happens.
var statusOf = map[string]int{
	presencestats.EINVALID:      http.StatusBadRequest,
	presencestats.EUNAUTHORIZED: http.StatusUnauthorized,
	presencestats.EFORBIDDEN:    http.StatusForbidden,
	presencestats.ENOTFOUND:     http.StatusNotFound,
	presencestats.ECONFLICT:     http.StatusConflict,
	presencestats.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	presencestats.ETOOMANY:      http.StatusTooManyRequests,
	presencestats.EUNAVAILABLE:  http.StatusServiceUnavailable,
	presencestats.ETIMEOUT:      http.StatusGatewayTimeout,
	presencestats.EINTERNAL:     http.StatusInternalServerError,
}

// ErrorStatus returns the HTTP status for err.
func ErrorStatus(err error) int {
	if s, ok := statusOf[presencestats.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong; Message never carries internal details.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// retryAfter is an error whose answer carries a Retry-After header: the client may try again
// after that long (a limit that frees up, a full instance).
type retryAfter struct {
	err   error
	after time.Duration
}

func (e *retryAfter) Error() string { return e.err.Error() }
func (e *retryAfter) Unwrap() error { return e.err }

// withRetryAfter marks err so that its answer says Retry-After: d (whole seconds, at least 1).
func withRetryAfter(err error, d time.Duration) error { return &retryAfter{err: err, after: d} }

// writeError answers with err's status and a client-safe body. 5xx causes are logged, never sent;
// refusals that carry a Retry-After (a limit shedding load) are counted by their limit, not logged.
func writeError(c *gin.Context, log *slog.Logger, err error) {
	status := ErrorStatus(err)
	code := presencestats.ErrorCode(err)
	msg := presencestats.ErrorMessage(err)
	var ra *retryAfter
	if errors.As(err, &ra) {
		c.Header("Retry-After", strconv.Itoa(int(max(1, (ra.after+time.Second-1)/time.Second))))
	} else if status >= 500 {
		log.ErrorContext(c.Request.Context(), "request failed", "err", err, "route", c.FullPath(),
			"request_id", c.GetString(requestIDKey))
	}
	if code == presencestats.EINTERNAL {
		msg = "internal error"
	}
	_ = c.Error(err)
	c.AbortWithStatusJSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}
