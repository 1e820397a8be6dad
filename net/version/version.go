// Package version names the build of this binary, for `miyamoto --version`, the
// simulator's traces and output, and the daemon's start line. It lives under net/
// only because the repository's top level is fixed; it does no IO and imports
// nothing of the project, so that any package (sim included) may use it.
//
// A release sets Version at link time:
//
//	go build -ldflags "-X github.com/miyamotohq/miyamoto/net/version.Version=v1.2.3" ./cmd/miyamoto
//
// Without it, String derives the version from the build information the Go
// toolchain records (the module version, and the VCS revision and time when the
// binary was built in a checkout), or says "devel".
package version

import (
	"runtime/debug"
	"strings"
)

// Version is the version given at link time with -ldflags -X; empty otherwise.
var Version string

// String is the build's version: Version when set, else one derived from the
// binary's build information (see FromBuildInfo).
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo names a build from what the toolchain recorded: the main module's
// version ("devel" when it has none, as with `go run` or a test binary), followed
// in parentheses by what the version does not already say of the VCS: the
// revision (12 hex digits), its commit time for a devel build, and "modified" for
// a tree with uncommitted changes. For example "devel (097b0ee1a2b3,
// 2025-11-29T10:26:00Z, modified)" or "v1.2.3".
func FromBuildInfo(bi *debug.BuildInfo) string {
	base := bi.Main.Version
	if base == "" || base == "(devel)" {
		base = "devel"
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	var parts []string
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && !strings.Contains(base, rev) {
		parts = append(parts, rev)
	}
	if at != "" && base == "devel" {
		parts = append(parts, at)
	}
	if modified && !strings.HasSuffix(base, "+dirty") {
		parts = append(parts, "modified")
	}
	if len(parts) == 0 {
		return base
	}
	return base + " (" + strings.Join(parts, ", ") + ")"
}
