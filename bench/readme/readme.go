// Package readme reads the shell commands the README shows, for the tests that run
// them as written (every command the README shows is run by a test).
package readme

import (
	"fmt"
	"os"
	"strings"
)

// Commands returns the lines of the ```sh blocks of the README at path in the
// section that starts with the line heading (up to the next "## " heading),
// trimmed, without blank lines and comments.
func Commands(path, heading string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		return nil, fmt.Errorf("%s has no section %q", path, heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var lines []string
	in := false
	for _, line := range strings.Split(section, "\n") {
		switch {
		case line == "```sh":
			in = true
		case line == "```":
			in = false
		case in && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#"):
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines, nil
}

// BlockAfter returns the first ```sh block of the README at path after the first
// occurrence of marker (a heading line or a paragraph's first words, with the
// newline before it), as it is written, for a test that runs one command of a
// section that also shows others.
func BlockAfter(path, marker string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(string(b), marker)
	if !ok {
		return "", fmt.Errorf("%s has no %q", path, strings.TrimSpace(marker))
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		return "", fmt.Errorf("%s has no ```sh block after %q", path, strings.TrimSpace(marker))
	}
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		return "", fmt.Errorf("%s: the ```sh block after %q does not end", path, strings.TrimSpace(marker))
	}
	return block, nil
}
