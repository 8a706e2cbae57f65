package handlers

import (
	"log/slog"
	"net/http"

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
	presencestats.EUNAVAILABLE:  http.StatusServiceUnavailable,
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

// writeError answers with err's status and a client-safe body. 5xx causes are logged, never sent.
func writeError(c *gin.Context, log *slog.Logger, err error) {
	status := ErrorStatus(err)
	code := presencestats.ErrorCode(err)
	msg := presencestats.ErrorMessage(err)
	if status >= 500 {
		log.ErrorContext(c.Request.Context(), "request failed", "err", err, "route", c.FullPath(),
			"request_id", c.GetString(requestIDKey))
		if code == presencestats.EINTERNAL {
			msg = "internal error"
		}
	}
	_ = c.Error(err)
	c.AbortWithStatusJSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}
