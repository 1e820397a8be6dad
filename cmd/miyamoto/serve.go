package main

import (
	"fmt"
	"io"
)

func runServe(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "miyamoto serve: the production daemon is not built yet (next issue); use 'miyamoto sim' meanwhile")
	return exitFailed
}
