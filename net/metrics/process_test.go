package metrics

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteProcess(t *testing.T) {
	var b bytes.Buffer
	WriteProcess(&b, "n1")
	out := b.String()
	for _, name := range []string{"go_heap_objects_bytes", "go_gc_heap_goal_bytes", "go_memory_total_bytes", "go_goroutines"} {
		require.Contains(t, out, "# TYPE "+name+" gauge\n"+name+`{node="n1"} `)
	}
	if runtime.GOOS == "linux" {
		require.Contains(t, out, `process_resident_memory_bytes{node="n1"} `)
	}
	require.NotContains(t, out, `go_heap_objects_bytes{node="n1"} 0`+"\n", "the heap is not empty")
}

func TestVmRSS(t *testing.T) {
	rss, ok := VmRSS("Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\nThreads: 3\n")
	require.True(t, ok)
	require.EqualValues(t, 2<<20, rss)
	_, ok = VmRSS("Name:\tx\n")
	require.False(t, ok)
	_, ok = VmRSS("VmRSS:\t 12 MB\n")
	require.False(t, ok)
}
