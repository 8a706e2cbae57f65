package storage

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// OpenRedis parses REDIS_URL and returns a client. It does not wait for the server: the service
// starts, and stays up, while Redis is down (presence degrades, see Presence).
func OpenRedis(ctx context.Context, url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	return redis.NewClient(opt), nil
}
