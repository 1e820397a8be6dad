package recorder

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/miyamotohq/miyamoto/net/version"
)

// Run is one start of a recorded node, as far as its files are still there.
type Run struct {
	Header Header   // from the run's first file present
	Files  []string // in order
	Groups [][]byte // one per input, in order
	// Start: the run's first file (node.New and Start) is there, so Replay can
	// re-execute it. Gap says where the groups stop short of the last file present
	// ("" when they reach it): a file dropped by the ring or damaged.
	Start bool
	Gap   string
	// Snapshot: the run's first file was dropped, and the oldest kept starts with a
	// snapshot of the node (Groups[0]), from which Replay can start.
	Snapshot bool
}

// IsRecording reports whether dir holds recording files.
func IsRecording(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if _, _, ok := parseFileName(e.Name()); ok {
			return true
		}
	}
	return false
}

// ReadDir reads every run recorded in dir, in order.
func ReadDir(dir string) ([]*Run, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if _, _, ok := parseFileName(e.Name()); ok {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s holds no recording (files named r000001-000000.rec, written by serve --record)", dir)
	}
	sort.Strings(names)
	var runs []*Run
	var cur *Run
	var lastSeq uint64
	for _, name := range names {
		run, seq, _ := parseFileName(name)
		if cur == nil || cur.Header.Run != run {
			cur = &Run{Start: seq == 0}
			runs = append(runs, cur)
		} else if seq != lastSeq+1 && cur.Gap == "" {
			cur.Gap = fmt.Sprintf("file %s is missing", fileName(run, lastSeq+1))
		}
		lastSeq = seq
		hdr, groups, torn, err := readFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if err := readable(hdr, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		if len(cur.Files) == 0 {
			cur.Header = hdr
			cur.Snapshot = seq != 0 && len(groups) > 0 && len(groups[0]) > 0 && groups[0][0] == inSnapshot
		}
		cur.Files = append(cur.Files, name)
		if cur.Gap == "" {
			cur.Groups = append(cur.Groups, groups...)
			if torn != "" {
				cur.Gap = torn
			}
		}
	}
	for _, r := range runs {
		// A torn end of the run's last file is where the process was killed, not a gap.
		if last := r.Files[len(r.Files)-1]; r.Gap == "torn end of "+last {
			r.Gap = ""
		}
	}
	return runs, nil
}

// readable refuses a file another build's format wrote, naming both builds.
func readable(hdr Header, path string) error {
	if hdr.Format == Format() {
		return nil
	}
	by := "a build from before recordings named their build and format"
	if hdr.Build != "" {
		by = fmt.Sprintf("build %s (recording format %q)", hdr.Build, hdr.Format)
	}
	return fmt.Errorf("%s was recorded by %s; this build, %s, reads format %q: use the build that recorded it (its binary, or the commit its version names)", path, by, version.String(), Format())
}

// readFile reads one file's header and whole groups; torn says where a damaged or
// incomplete frame stopped it.
func readFile(path string) (hdr Header, groups [][]byte, torn string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return hdr, nil, "", err
	}
	name := filepath.Base(path)
	if !bytes.HasPrefix(b, []byte(magic)) {
		return hdr, nil, "", fmt.Errorf("%s is not a recording file (no %q at its start)", path, magic)
	}
	b = b[len(magic):]
	payload, n, err := nextFrame(b)
	if err != nil {
		return hdr, nil, "", fmt.Errorf("%s: its header is damaged", path)
	}
	if err := gob.NewDecoder(bytes.NewReader(payload)).Decode(&hdr); err != nil {
		return hdr, nil, "", fmt.Errorf("%s: its header does not decode: %w", path, err)
	}
	b = b[n:]
	var parts []byte // the front of the next group, from its inPart frames
	for len(b) > 0 {
		payload, n, err := nextFrame(b)
		if err != nil {
			// Parts without their group's end are an input cut short: dropped.
			return hdr, groups, "torn end of " + name, nil
		}
		b = b[n:]
		switch {
		case len(payload) > 0 && payload[0] == inPart:
			parts = append(parts, payload[1:]...)
		case parts != nil:
			groups = append(groups, append(parts, payload...))
			parts = nil
		default:
			groups = append(groups, payload)
		}
	}
	if parts != nil {
		return hdr, groups, "torn end of " + name, nil // killed while the input ran
	}
	return hdr, groups, "", nil
}
