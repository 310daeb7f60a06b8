//go:build !linux

package crashtest

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie a child's life to
// its parent's; t.Cleanup and the command's context still end the gateway.
func dieWithParent(cmd *exec.Cmd) {}
