package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// AnchorError says that an edit's text is not found exactly once: the source it was
// written against has changed, and the mutant must be rewritten.
type AnchorError struct {
	File  string
	Text  string
	Count int
	// Revert: the replacement, not the original, was looked for.
	Revert bool
}

func (e *AnchorError) Error() string {
	what := "anchor"
	if e.Revert {
		what = "replacement"
	}
	first, _, _ := strings.Cut(e.Text, "\n")
	return fmt.Sprintf("%s: %s %q found %d times, want exactly once", e.File, what, first, e.Count)
}

// applyText makes the edits that touch file to src, in order.
func applyText(file, src string, edits []Edit) (string, error) {
	for _, ed := range edits {
		if ed.File != file {
			continue
		}
		if n := strings.Count(src, ed.Old); n != 1 {
			return "", &AnchorError{File: file, Text: ed.Old, Count: n}
		}
		src = strings.Replace(src, ed.Old, ed.New, 1)
	}
	return src, nil
}

// revertText undoes applyText: the edits that touch file, in reverse order.
func revertText(file, src string, edits []Edit) (string, error) {
	for i := len(edits) - 1; i >= 0; i-- {
		ed := edits[i]
		if ed.File != file {
			continue
		}
		if n := strings.Count(src, ed.New); n != 1 {
			return "", &AnchorError{File: file, Text: ed.New, Count: n, Revert: true}
		}
		src = strings.Replace(src, ed.New, ed.Old, 1)
	}
	return src, nil
}

// files lists the files a mutant edits, each once, in order of first edit.
func (m *Mutant) files() []string {
	var out []string
	for _, ed := range m.Edits {
		if !contains(out, ed.File) {
			out = append(out, ed.File)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// mutatedFiles reads the mutant's files under root and returns their mutated
// contents, by file; an error is an *AnchorError or a read error.
func (m *Mutant) mutatedFiles(root string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range m.files() {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		s, err := applyText(f, string(b), m.Edits)
		if err != nil {
			return nil, err
		}
		out[f] = s
	}
	return out, nil
}

// copyTree copies the regular files under src to dst (created), skipping version
// control directories. Symbolic links are skipped: the module has none that matter
// to a build.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.Name() == ".git" || d.Name() == ".jj" || d.Name() == ".hg" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil // a worktree's .git file
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
		return nil
	})
}
