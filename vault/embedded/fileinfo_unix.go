//go:build unix

package embedded

import (
	"io/fs"
	"os"
	"syscall"
)

// linkCount returns the number of names a file has.
func linkCount(fi fs.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}

// sameOwner gives f the owner and group of the file fi describes, so that
// a key file rotated by root stays readable by the gateway's user.
func sameOwner(f *os.File, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
