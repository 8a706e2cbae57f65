// Package handlers speaks HTTP and WebSocket: routes, authentication, request validation, the
// mapping of application errors to status codes, the WebSocket hub and the embedded web pages.
// It never imports pgx or go-redis: it declares the few methods it needs as interfaces and cmd
// passes the storage types that implement them.
package handlers
