// Package storage speaks Redis and SQL for the service: live presence in Redis, the presence
// event history and the reports in TimescaleDB, migrations, the admin audit log. It never imports
// gin or melody and knows nothing of HTTP. SQL lives in .sql files (sql/ and migrations/).
package storage
