package storagetest

// CreateDatabase exposes createDatabase to the package's tests.
var CreateDatabase = createDatabase
