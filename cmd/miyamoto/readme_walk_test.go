package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// walkLeaderBound is the election bound the README's walkthrough states: the lease
// (5 s) plus a second per member (5).
const walkLeaderBound = 10 * time.Second

// readmeSectionBlocks returns every ```sh block of README.md's section under the
// line heading (see readmeSection), joined into one script.
func readmeSectionBlocks(t *testing.T, heading string) string {
	t.Helper()
	section := readmeSection(t, heading)
	var script strings.Builder
	blocks := 0
	for rest := section; ; {
		var ok bool
		if _, rest, ok = strings.Cut(rest, "```sh\n"); !ok {
			break
		}
		block, after, ok := strings.Cut(rest, "```")
		require.True(t, ok, "an sh block under %q does not end", heading)
		script.WriteString(block)
		blocks++
		rest = after
	}
	require.NotZero(t, blocks, "no sh block under %q", heading)
	return script.String()
}

// The README's walkthrough, every block of it run as one script, as written: a
// node, four joins, twenty tasks, the leader killed with kill -9, a new leader
// within the bound the README states, twenty more tasks through a survivor, two
// removals, and every acknowledged task delivered exactly once, counted by
// X-Task-Id in the sink's own output. Its last block stops the sink and the nodes.
func readmeWalkthrough(t *testing.T) {
	binary(t) // skips with -short; warms the build cache the script's go build uses
	requireTools(t, "bash", "curl")
	readmePorts(t, 8101, 8102, 8103, 8104, 8105, 7121, 7122, 7123, 7124, 7125, 9099)
	heading := "### Walkthrough: grow to five, lose the leader, shrink to three"
	dir := workTree(t)
	script := readmeSectionBlocks(t, heading)

	started := time.Now()
	out := runScript(t, dir, script, 5*time.Minute)
	t.Logf("the walkthrough took %s", time.Since(started).Round(time.Second))

	m := regexp.MustCompile(`killed (w\d); (w\d) leads after (\d+) s`).FindStringSubmatch(out)
	require.NotNil(t, m, "no new leader reported:\n%s", out)
	require.NotEqual(t, m[1], m[2])
	secs, _ := strconv.Atoi(m[3])
	t.Logf("%s killed; %s leads after %d s", m[1], m[2], secs)
	// bash's SECONDS counts whole seconds, and the poll adds a fraction of one.
	require.LessOrEqual(t, time.Duration(secs)*time.Second, walkLeaderBound,
		"the README states a new leader within %s", walkLeaderBound)
	require.Contains(t, readmeSection(t, heading), "within the lease plus a second per member, 10 s here",
		"the README's stated bound changed: update walkLeaderBound")

	acked := scheduledIDs(t, filepath.Join(dir, "enqueued.txt"))
	require.Len(t, acked, 40, "every enqueue, before and after the kill, was acknowledged:\n%s", out)

	removed := regexp.MustCompile(`(?m)^removed (w\d); roster epoch (\d+): (w\d(?:, w\d)*)$`).FindAllStringSubmatch(out, -1)
	require.Len(t, removed, 2, "two removals answered removed:\n%s", out)
	require.Equal(t, m[1], removed[0][1], "the dead leader is removed first")
	left := strings.Split(removed[1][3], ", ")
	require.Len(t, left, 3, "three members are left:\n%s", out)
	require.NotContains(t, left, removed[1][1])

	// Each member left reports the last roster and no task on a removed member
	// (the script waits for that, but goes on after 60 s).
	reports := regexp.MustCompile(`(?m)^(w\d): epoch (\d+)(.*)$`).FindAllStringSubmatch(out, -1)
	require.Len(t, reports, 3, "one line per member left:\n%s", out)
	for i, r := range reports {
		require.Equal(t, left[i], r[1])
		require.Equal(t, removed[1][2], r[2], "%s does not know the last roster", r[1])
		require.Empty(t, strings.TrimSpace(r[3]), "%s still holds tasks on removed members", r[1])
	}

	delivered, err := os.ReadFile(filepath.Join(dir, "delivered.txt"))
	require.NoError(t, err)
	count := map[string]int{}
	for _, id := range strings.Fields(string(delivered)) {
		count[id]++
	}
	for _, id := range acked {
		require.Equal(t, 1, count[id], "task %s delivered %d times", id, count[id])
	}
	require.Len(t, count, len(acked), "the sink got calls for tasks nobody acknowledged: %v", count)
	require.Contains(t, out, "acknowledged 40, delivered 40, deliveries 40", "the README's own count")

	for _, port := range []int{9099, 8101, 8102, 8103, 8104, 8105} {
		require.Eventually(t, func() bool {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		}, 20*time.Second, 100*time.Millisecond, "the last block did not stop what listens on %d", port)
	}
}

// readmeSection returns the README's text under the line heading, up to the next
// heading ("## " or deeper: a line "# ..." may be a comment in a shell block).
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "\n"+heading+"\n")
	require.True(t, ok, "README.md has no line %q", heading)
	section, _, _ = strings.Cut(section, "\n##")
	return section
}

// scheduledIDs returns the IDs of the answers "scheduled" in a file of enqueue
// answers (one JSON object a line, as curl printed them).
func scheduledIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	re := regexp.MustCompile(`"status": "scheduled", "id": "([0-9a-f-]{36})"`)
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if sm := re.FindStringSubmatch(line); sm != nil {
			ids = append(ids, sm[1])
		} else {
			t.Errorf("an enqueue was not acknowledged: %s", line)
		}
	}
	return ids
}
