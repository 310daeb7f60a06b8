package crashtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel SIGKILL the gateway if the test process dies
// first (a -timeout panic, a SIGKILL to `go test`), when no cleanup runs.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
