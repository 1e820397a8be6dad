//go:build !unix

package daemon

// openFileLimit is 0 where the limit cannot be read: the cap is the flag's alone.
func openFileLimit() int { return 0 }
