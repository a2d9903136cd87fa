package controlplane

import "syscall"

// dieWithParent has the kernel kill a child process when this one dies.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
