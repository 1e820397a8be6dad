package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// moduleRoot is the module root, three levels above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// TestCatalogueAnchors keeps the catalogue honest as node/ changes: every edit's text
// is found exactly once in the current sources, the mutated file still parses, and
// reverting the mutant gives the sources back byte for byte.
func TestCatalogueAnchors(t *testing.T) {
	root := moduleRoot(t)
	for _, m := range Catalogue {
		t.Run(m.Name, func(t *testing.T) {
			mutated, err := m.mutatedFiles(root)
			if err != nil {
				t.Fatalf("anchor lost: %v", err)
			}
			for f, s := range mutated {
				b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
				if err != nil {
					t.Fatal(err)
				}
				if s == string(b) {
					t.Errorf("%s: the edits change nothing", f)
				}
				if _, err := parser.ParseFile(token.NewFileSet(), f, s, parser.SkipObjectResolution); err != nil {
					t.Errorf("%s: the mutated file does not parse: %v", f, err)
				}
				back, err := revertText(f, s, m.Edits)
				if err != nil {
					t.Fatalf("revert: %v", err)
				}
				if back != string(b) {
					t.Errorf("%s: applying then reverting is not the identity", f)
				}
			}
		})
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

func TestCatalogueEntries(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Catalogue {
		if !nameRE.MatchString(m.Name) || seen[m.Name] {
			t.Errorf("mutant name %q: want unique kebab-case", m.Name)
		}
		seen[m.Name] = true
		if m.Desc == "" || strings.Contains(m.Desc, "\n") {
			t.Errorf("%s: want a one-line description", m.Name)
		}
		if len(m.Edits) == 0 {
			t.Errorf("%s: no edits", m.Name)
		}
		for _, ed := range m.Edits {
			if !strings.HasPrefix(ed.File, "node/") || !strings.HasSuffix(ed.File, ".go") || strings.HasSuffix(ed.File, "_test.go") {
				t.Errorf("%s: edits %s, want a non-test Go file of node/", m.Name, ed.File)
			}
			if ed.Old == ed.New || ed.New == "" {
				t.Errorf("%s: edit %q -> %q: want a different, non-empty replacement (it must be found to revert)", m.Name, ed.Old, ed.New)
			}
		}
	}
	if len(Catalogue) < 26 {
		t.Errorf("catalogue has %d mutants, want at least 26", len(Catalogue))
	}
}

func TestApplyRevert(t *testing.T) {
	edits := []Edit{{File: "f.go", Old: "a < b", New: "a <= b"}, {File: "g.go", Old: "x", New: "y"}}
	got, err := applyText("f.go", "if a < b {}", edits)
	if err != nil || got != "if a <= b {}" {
		t.Fatalf("apply: %q, %v", got, err)
	}
	if back, err := revertText("f.go", got, edits); err != nil || back != "if a < b {}" {
		t.Fatalf("revert: %q, %v", back, err)
	}
	for _, src := range []string{"if c {}", "a < b; a < b"} {
		_, err := applyText("f.go", src, edits)
		if ae, ok := err.(*AnchorError); !ok || ae.Count != strings.Count(src, "a < b") {
			t.Errorf("apply to %q: %v, want an AnchorError with the count", src, err)
		}
	}
}

func TestScenarioCatch(t *testing.T) {
	pass := &ScenarioReport{Path: "scenarios/x.json", Expect: "pass", Seeds: 10, Met: false, Failed: []uint64{3, 7},
		Invariants: map[string]*InvStat{"S1": {Seeds: 1, First: 7}, "S3": {Seeds: 2, First: 3}}}
	c := scenarioCatch(pass)
	if c == nil || c.Scenario != "x" || strings.Join(c.Why, ",") != "S3,S1" || c.Seeds != 2 || c.First != 3 || c.Run != 10 {
		t.Errorf("pass scenario with violations: %+v", c)
	}
	if c := scenarioCatch(&ScenarioReport{Expect: "pass", Seeds: 10, Met: true}); c != nil {
		t.Errorf("clean pass scenario caught: %+v", c)
	}
	control := &ScenarioReport{Expect: "violation", ExpectInvariants: []string{"S5"}, Seeds: 10, Met: true, Caught: 4, Failed: []uint64{1, 2, 3, 4},
		Invariants: map[string]*InvStat{"S5": {Seeds: 4, First: 1}}}
	if c := scenarioCatch(control); c != nil {
		t.Errorf("negative control caught as expected counted as a catch: %+v", c)
	}
	control.Met, control.Caught = false, 0
	if c := scenarioCatch(control); c == nil || c.Why[0] != "control missed" {
		t.Errorf("negative control no longer caught: %+v", c)
	}
	panicked := &ScenarioReport{Expect: "pass", Seeds: 10, Met: true, Panics: []Panic{{Seed: 9, Value: "boom"}, {Seed: 4, Value: "boom"}}}
	if c := scenarioCatch(panicked); c == nil || c.Why[0] != "panic" || c.Seeds != 2 || c.First != 4 {
		t.Errorf("panicking seeds: %+v", c)
	}
}

func TestPanicFrame(t *testing.T) {
	stack := `goroutine 7 [running]:
runtime/debug.Stack()
	runtime/debug/stack.go:26 +0x5e
main.sweepScenario.func1.1()
	github.com/miyamotohq/miyamoto/bench/cmd/mutate/worker.go:101 +0x45
panic({0x5f1a40?, 0xc0001a2000?})
	runtime/panic.go:792 +0x132
github.com/miyamotohq/miyamoto/node.(*Node).deliver(0xc000112000, 0xc0002a4000)
	github.com/miyamotohq/miyamoto/node/claim.go:263 +0x1a5
github.com/miyamotohq/miyamoto/sim.(*world).step(0xc000100000)
	github.com/miyamotohq/miyamoto/sim/world.go:80 +0x33
`
	if got, want := panicFrame(stack), "node.(*Node).deliver at github.com/miyamotohq/miyamoto/node/claim.go:263"; got != want {
		t.Errorf("panicFrame = %q, want %q", got, want)
	}
}
