//go:build !linux

package main

import "syscall"

// childAttrs: outside Linux there is no parent-death signal; Close still kills
// every node by PID.
func childAttrs() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
