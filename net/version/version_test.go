package version

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFromBuildInfo(t *testing.T) {
	rev := "097b0ee1a2b3c4d5e6f708192a3b4c5d6e7f8091"
	vcs := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, c := range []struct {
		name     string
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"test binary or go run", "", nil, "devel"},
		{"devel without VCS", "(devel)", nil, "devel"},
		{"checkout, clean", "(devel)", vcs("vcs.revision", rev, "vcs.time", "2025-11-29T10:26:00Z", "vcs.modified", "false"),
			"devel (097b0ee1a2b3, 2025-11-29T10:26:00Z)"},
		{"checkout, modified", "(devel)", vcs("vcs.revision", rev, "vcs.time", "2025-11-29T10:26:00Z", "vcs.modified", "true"),
			"devel (097b0ee1a2b3, 2025-11-29T10:26:00Z, modified)"},
		{"pseudo-version already names revision, time and dirt", "v0.0.0-20251129102600-097b0ee1a2b3+dirty",
			vcs("vcs.revision", rev, "vcs.time", "2025-11-29T10:26:00Z", "vcs.modified", "true"),
			"v0.0.0-20251129102600-097b0ee1a2b3+dirty"},
		{"tagged release built in a checkout", "v1.2.3", vcs("vcs.revision", rev, "vcs.time", "2025-11-29T10:26:00Z"),
			"v1.2.3 (097b0ee1a2b3)"},
		{"go install module@version", "v1.2.3", nil, "v1.2.3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/miyamotohq/miyamoto", Version: c.version}, Settings: c.settings}
			require.Equal(t, c.want, FromBuildInfo(bi))
		})
	}
}

func TestStringPrefersTheLinkTimeVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = ""
	derived := String()
	require.NotEmpty(t, derived)
	Version = "v9.9.9-test"
	require.Equal(t, "v9.9.9-test", String())
}
