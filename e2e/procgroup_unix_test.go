//go:build unix

package e2e

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the child in a process group of its own, so that it
// and anything it starts (npm starts node, node may start more) can be
// killed together; for exec.CommandContext, the context's end kills the
// whole group too.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.Cancel != nil { // made with exec.CommandContext
		cmd.Cancel = func() error {
			return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

// killProcessGroup kills the child's whole process group; harmless when it
// has already exited.
func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
}
