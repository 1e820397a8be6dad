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
