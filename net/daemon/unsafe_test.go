package daemon_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// node.Config.Unsafe switches on deliberate protocol slips for the simulator's
// negative controls. Production must never reach it: no code of the daemon, of the
// rest of net/ or of the command (flags, environment, API) may name the field.
func TestProductionNeverSetsUnsafe(t *testing.T) {
	fset := token.NewFileSet()
	for _, root := range []string{"..", "../../cmd"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok && id.Name == "Unsafe" {
					t.Errorf("%s: names Unsafe: only the simulator may switch on node.Config.Unsafe", fset.Position(id.Pos()))
				}
				return true
			})
			return nil
		})
		require.NoError(t, err)
	}
}
