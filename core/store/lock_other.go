//go:build !unix

package store

import "os"

// lockFile is a no-op where flock(2) does not exist: ingest into a SQLite
// store from one process only.
func lockFile(path string) (*os.File, error) { return nil, nil }
