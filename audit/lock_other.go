//go:build !unix

package audit

import "os"

// lock is a no-op where flock(2) does not exist; run one writer per log.
func lock(f *os.File) error { return nil }
