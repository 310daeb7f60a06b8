//go:build unix

package embedded_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/blindpost/blindpost/vault/embedded"
)

func TestKeyFileUpdatesKeepTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root on unix to give a file to another user")
	}
	path := filepath.Join(t.TempDir(), "vault.key")
	if err := embedded.GenerateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 65534, 65534 // nobody: the gateway's user, say
	if err := os.Chown(path, uid, gid); err != nil {
		t.Skip("cannot chown here:", err)
	}
	if _, err := embedded.RotateKeyFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != uid || st.Gid != gid {
		t.Fatalf("owner after rotation: %+v", fi.Sys())
	}
}
