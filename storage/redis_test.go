package storage_test

import (
	"slices"
	"testing"

	"presencestats/storage"
)

// REDIS_URL: one address is one server; several comma-separated ones are the seeds of a Redis
// Cluster, with the credentials and options of the URL.
func TestParseRedisURL(t *testing.T) {
	single, cluster, err := storage.ParseRedisURL("redis://:pw@127.0.0.1:6380/2?dial_timeout=2s")
	if err != nil || cluster != nil || single == nil || single.Addr != "127.0.0.1:6380" || single.DB != 2 || single.Password != "pw" {
		t.Fatalf("single: %+v %+v %v", single, cluster, err)
	}
	single, cluster, err = storage.ParseRedisURL("redis://user:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0?max_retries=-1")
	if err != nil || single != nil || cluster == nil {
		t.Fatalf("cluster: %+v %+v %v", single, cluster, err)
	}
	if got, want := cluster.Addrs, []string{"10.0.0.1:7000", "10.0.0.2:7001", "[::1]:7002"}; !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	if cluster.Username != "user" || cluster.Password != "p@ss" || cluster.MaxRetries != -1 {
		t.Errorf("credentials or options not taken: %+v", cluster)
	}
	for _, bad := range []string{"redis://a:7000,b:7001/1", "redis://a:7000,", "127.0.0.1:6380", "redis://a:7000,b:7001?max_retries=x"} {
		if _, _, err := storage.ParseRedisURL(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
