package storage_test

import (
	"os"
	"testing"

	"presencestats/storage/storagetest"
)

// TestMain runs the tests through storagetest.Main, which drops the shared test database at the
// end when the suite runs against a real server (TEST_DATABASE_URL).
func TestMain(m *testing.M) { os.Exit(storagetest.Main(m)) }
