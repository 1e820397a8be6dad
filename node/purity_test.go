package node

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The node package must stay a deterministic state machine (DESIGN.md, "The node"):
// no goroutines, no locks, no wall clock, no global randomness, no OS or network IO.
// These tests read the package's own source and enforce that.

// Kinds of purity violations.
const (
	violGo          = "go statement"
	violWallClock   = "wall clock"
	violGlobalRand  = "global rand"
	violImport      = "forbidden import"
	violForeignDeps = "non-stdlib import"
	violCronRunner  = "cron runner"
	violRawTimer    = "timer not an alarm"
)

// forbiddenImports may not appear in node/'s non-test files.
var forbiddenImports = map[string]string{
	"math/rand":   "the global math/rand source is not seeded per node",
	"crypto/rand": "OS randomness is not reproducible",
	"os":          "no OS access",
	"os/exec":     "no OS access",
	"os/signal":   "no OS access",
	"net":         "no network IO",
	"net/http":    "no network IO",
	"sync":        "no locks: a node is single-threaded",
	"sync/atomic": "no atomics: a node is single-threaded",
	"unsafe":      "no unsafe",
	"syscall":     "no OS access",
}

// wallClockFuncs are the time functions that read or wait on the real clock.
var wallClockFuncs = []string{"Now", "Since", "Until", "Sleep", "After", "Tick", "NewTimer", "NewTicker", "AfterFunc"}

// allowedModules are the only non-standard-library imports node/ may use. The cron
// parser is pure (a parsed expression's Next is a function of its argument); node/
// uses nothing of robfig/cron's runner (its goroutines and clock).
var allowedModules = []string{"github.com/google/uuid", "github.com/robfig/cron/v3"}

// cronParsing is what node/ may use of robfig/cron: its parser and schedules, not
// its runner (cron.New starts goroutines and reads the wall clock).
var cronParsing = []string{"NewParser", "Schedule", "ConstantDelaySchedule", "SpecSchedule",
	"Second", "SecondOptional", "Minute", "Hour", "Dom", "Month", "Dow", "DowOptional", "Descriptor"}

type purityViolation struct {
	Pos  token.Position
	Kind string
	Msg  string
}

func (v purityViolation) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", v.Pos.Filename, v.Pos.Line, v.Kind, v.Msg)
}

// checkPurity parses one file (src may be nil to read filename) and reports every
// violation in it.
func checkPurity(fset *token.FileSet, filename string, src any) ([]purityViolation, error) {
	f, err := parser.ParseFile(fset, filename, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var out []purityViolation
	report := func(pos token.Pos, kind, format string, args ...any) {
		out = append(out, purityViolation{Pos: fset.Position(pos), Kind: kind, Msg: fmt.Sprintf(format, args...)})
	}

	// Local names of the packages we look into; "." marks a dot import.
	timeNames := map[string]bool{}
	randNames := map[string]bool{}
	cronNames := map[string]bool{}
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			report(imp.Pos(), violImport, "bad import path %s", imp.Path.Value)
			continue
		}
		if why, bad := forbiddenImports[path]; bad {
			report(imp.Pos(), violImport, "imports %q: %s", path, why)
		}
		if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") && !slices.Contains(allowedModules, path) {
			report(imp.Pos(), violForeignDeps, "imports %q: node/ may import only the standard library and %v", path, allowedModules)
		}
		name := ""
		if imp.Name != nil {
			name = imp.Name.Name
		}
		switch path {
		case "time":
			if name == "" {
				name = "time"
			}
			timeNames[name] = true
		case "math/rand/v2":
			if name == "" {
				name = "rand"
			}
			randNames[name] = true
		case "github.com/robfig/cron/v3":
			if name == "" {
				name = "cron"
			}
			cronNames[name] = true
		}
	}
	if timeNames["."] {
		report(f.Name.Pos(), violWallClock, `dot import of "time" hides wall-clock calls`)
	}
	if randNames["."] {
		report(f.Name.Pos(), violGlobalRand, `dot import of "math/rand/v2" hides global rand calls`)
	}

	// pkgIdent returns the package name x refers to when x is a bare identifier
	// naming an imported package. Parsing without type information cannot tell a
	// local variable that shadows the package name apart; node/ does not do that.
	pkgIdent := func(x ast.Expr) string {
		if id, ok := x.(*ast.Ident); ok {
			return id.Name
		}
		return ""
	}

	ast.Inspect(f, func(nd ast.Node) bool {
		switch nd := nd.(type) {
		case *ast.GoStmt:
			report(nd.Pos(), violGo, "go statement: a node must not start goroutines")
		case *ast.SelectorExpr:
			// Any reference, called or not (f := time.Now is as bad as time.Now()).
			if timeNames[pkgIdent(nd.X)] && slices.Contains(wallClockFuncs, nd.Sel.Name) {
				report(nd.Pos(), violWallClock, "time.%s: use the Env's Clock", nd.Sel.Name)
			}
			if nd.Sel.Name == "AfterFunc" && !timeNames[pkgIdent(nd.X)] && filepath.Base(filename) != "alarms.go" {
				// Every timer is data, armed through Node.after (alarms.go), so that a
				// snapshot can write it down.
				report(nd.Pos(), violRawTimer, "%s.AfterFunc: arm an alarm (Node.after in alarms.go), not a function", "Clock")
			}
			if cronNames[pkgIdent(nd.X)] && !slices.Contains(cronParsing, nd.Sel.Name) {
				report(nd.Pos(), violCronRunner, "cron.%s: node/ may use robfig/cron's parser only, not its runner", nd.Sel.Name)
			}
		case *ast.CallExpr:
			// math/rand/v2 is imported for the *rand.Rand type only: every call of a
			// package-level function (rand.IntN, rand.New, ...) is either the global
			// source or a source built outside the Env.
			if sel, ok := nd.Fun.(*ast.SelectorExpr); ok && randNames[pkgIdent(sel.X)] {
				report(nd.Pos(), violGlobalRand, "rand.%s: use the Env's Rand", sel.Sel.Name)
			}
		}
		return true
	})
	return out, nil
}

// TestPurity checks every non-test Go file of this package.
func TestPurity(t *testing.T) {
	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	fset := token.NewFileSet()
	checked := 0
	for _, de := range entries {
		name := de.Name()
		if de.IsDir() || filepath.Ext(name) != ".go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		checked++
		vs, err := checkPurity(fset, name, nil)
		require.NoError(t, err, name)
		for _, v := range vs {
			t.Errorf("%s", v)
		}
	}
	// The package has at least node.go, claim.go, config.go, env.go, types.go.
	assert.GreaterOrEqual(t, checked, 5, "too few source files found: is the test running in node/?")
}

// TestPurityCheckerCatchesEachKind runs the checker over a bad source so that the
// purity test is known to be able to fail.
func TestPurityCheckerCatchesEachKind(t *testing.T) {
	const bad = `package bad

import (
	"math/rand"
	r2 "math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	clk "time"
	"unsafe"

	"github.com/example/other"
	"github.com/robfig/cron/v3"
)

var _ = os.Args
var _ = net.IPv4len
var _ http.Client
var _ sync.Mutex
var _ atomic.Int64
var _ = syscall.Getpid
var _ unsafe.Pointer
var _ = other.X
var now = clk.Now
var _ = cron.New()
var _ = cron.NewParser(cron.Minute)

func f(src *r2.Rand) {
	go func() {}()
	_ = clk.Now()
	_ = clk.Since(clk.Time{})
	clk.Sleep(1)
	<-clk.After(1)
	_ = clk.AfterFunc(1, func() {})
	_ = rand.Intn(3)
	_ = r2.IntN(3)
	_ = r2.Float64()
	_ = r2.New(r2.NewPCG(1, 2))
	_ = src.IntN(3) // fine: the seeded source
	_ = clk.Duration(3) // fine: not a clock read
	_ = env.Clock.AfterFunc(1, func() {})
}
`
	fset := token.NewFileSet()
	vs, err := checkPurity(fset, "bad.go", bad)
	require.NoError(t, err)

	count := map[string]int{}
	lines := map[string][]int{}
	for _, v := range vs {
		assert.Equal(t, "bad.go", v.Pos.Filename, "violation must name the file: %s", v)
		assert.Positive(t, v.Pos.Line, "violation must name the line: %s", v)
		count[v.Kind]++
		lines[v.Kind] = append(lines[v.Kind], v.Pos.Line)
	}
	assert.Equal(t, 1, count[violGo], "go statements: %v", lines[violGo])
	// var now = clk.Now, Now(), Since, Sleep, After, AfterFunc
	assert.Equal(t, 6, count[violWallClock], "wall clock: %v", lines[violWallClock])
	// r2.IntN, r2.Float64, r2.New, r2.NewPCG (rand.Intn is caught by the import)
	assert.Equal(t, 4, count[violGlobalRand], "global rand: %v", lines[violGlobalRand])
	// math/rand, net, net/http, os, sync, sync/atomic, syscall, unsafe
	assert.Equal(t, 8, count[violImport], "imports: %v", lines[violImport])
	assert.Equal(t, 1, count[violForeignDeps], "foreign deps: %v", lines[violForeignDeps])
	assert.Equal(t, 1, count[violCronRunner], "cron runner: %v", lines[violCronRunner])
	assert.Equal(t, 1, count[violRawTimer], "timers not alarms: %v", lines[violRawTimer])

	// A specific line: the go statement is on the line after "func f(".
	goLine := strings.Count(bad[:strings.Index(bad, "go func")], "\n") + 1
	assert.Equal(t, []int{goLine}, lines[violGo])

	// Dot imports are reported too.
	vs, err = checkPurity(fset, "dot.go", "package dot\nimport . \"time\"\nimport . \"math/rand/v2\"\nvar _ = Now\nvar _ = IntN\n")
	require.NoError(t, err)
	kinds := []string{}
	for _, v := range vs {
		kinds = append(kinds, v.Kind)
	}
	assert.ElementsMatch(t, []string{violWallClock, violGlobalRand}, kinds)

	// A clean file reports nothing.
	vs, err = checkPurity(fset, "good.go", "package good\nimport (\n\"math/rand/v2\"\n\"time\"\n)\ntype env struct{ r *rand.Rand; d time.Duration }\nfunc (e env) f() int { return e.r.IntN(3) }\n")
	require.NoError(t, err)
	assert.Empty(t, vs)
}
