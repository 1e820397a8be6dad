package readme

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCommands(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	require.NoError(t, os.WriteFile(path, []byte("# T\n\n## A\n\n```sh\n# a comment\nfirst  \n\n  second\n```\n\ntext\n\n```sh\nthird\n```\n\n## B\n\n```sh\nnot A\n```\n"), 0o644))
	got, err := Commands(path, "## A")
	require.NoError(t, err)
	require.Equal(t, []string{"first", "second", "third"}, got)
	_, err = Commands(path, "## C")
	require.ErrorContains(t, err, `no section "## C"`)
}

func TestBlockAfter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	require.NoError(t, os.WriteFile(path, []byte("# T\n\n```sh\nbefore\n```\n\n**Mark** it:\n\n```sh\none\ntwo\n```\n\n```sh\nlater\n```\n"), 0o644))
	got, err := BlockAfter(path, "\n**Mark**")
	require.NoError(t, err)
	require.Equal(t, "one\ntwo", got)
	_, err = BlockAfter(path, "\n**Missing**")
	require.ErrorContains(t, err, `no "**Missing**"`)
	_, err = BlockAfter(path, "later")
	require.ErrorContains(t, err, "no ```sh block after")
}
