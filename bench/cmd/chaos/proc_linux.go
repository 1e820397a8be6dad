package main

import "syscall"

// childAttrs makes the kernel kill a node if the chaos process dies without
// cleaning up (kill -9 of the tool itself), so no node outlives its run.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
