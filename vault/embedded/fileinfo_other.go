//go:build !unix

package embedded

import (
	"io/fs"
	"os"
)

// linkCount cannot tell the number of names a file has here.
func linkCount(fs.FileInfo) (uint64, bool) { return 0, false }

// sameOwner leaves ownership alone here.
func sameOwner(*os.File, fs.FileInfo) error { return nil }
