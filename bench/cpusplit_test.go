package bench

import (
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/require"
)

// Each sample is charged to the first part its stack belongs to, by its role and
// then its frames, leaf first in the profile as the runtime writes them.
func TestSplitProfileCharges(t *testing.T) {
	p := &profile.Profile{SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}}}
	fns := map[string]*profile.Function{}
	stack := func(names ...string) []*profile.Location {
		var locs []*profile.Location
		for _, n := range names {
			f := fns[n]
			if f == nil {
				f = &profile.Function{ID: uint64(len(fns) + 1), Name: n}
				fns[n] = f
				p.Function = append(p.Function, f)
			}
			l := &profile.Location{ID: uint64(len(p.Location) + 1), Line: []profile.Line{{Function: f}}}
			p.Location = append(p.Location, l)
			locs = append(locs, l)
		}
		return locs
	}
	add := func(role string, us int64, names ...string) {
		s := &profile.Sample{Location: stack(names...), Value: []int64{1, us * 1000}}
		if role != "" {
			s.Label = map[string][]string{"bench": {role}}
		}
		p.Sample = append(p.Sample, s)
	}
	const mod = "github.com/miyamotohq/miyamoto"
	add(roleLoad, 1, "net/http.(*persistConn).writeLoop") // the load's own client
	add(roleSink, 2, "net/http.(*conn).serve")
	add(roleTarget, 4, "syscall.write", "net/http.(*persistConn).roundTrip", "net/http.(*conn).serve") // a relay forwarding
	add(roleTarget, 8, "runtime.mallocgc", mod+"/node.(*Node).freeze", mod+"/node.(*Node).freezeOld", mod+"/net/driver.(*Driver).Run")
	add(roleTarget, 16, mod+"/net/webhook.(*Dispatcher).Dispatch", mod+"/net/driver.(*Driver).Run") // the node's hand-over
	add(roleTarget, 32, "syscall.write", mod+"/net/peer.(*Transport).pump")
	add(roleTarget, 64, "syscall.fsync", mod+"/net/disk.(*Log).run")
	add("", 128, "runtime.gcDrain", "runtime.gcBgMarkWorker")
	add("", 256, "runtime.findRunnable", "runtime.schedule")
	add(roleTarget, 512, "time.Sleep")

	s := splitProfile(p)
	us := func(part cpuPart) int64 { return int64(s.parts[part] / time.Microsecond) }
	require.EqualValues(t, 1, us(partLoad))
	require.EqualValues(t, 2, us(partSink))
	require.EqualValues(t, 4, us(partClient), "a handler's forward is the client's")
	require.EqualValues(t, 0, us(partServer))
	require.EqualValues(t, 24, us(partNode), "a node goroutine's hand-over to the webhook is the node's")
	require.EqualValues(t, 8, us(partFreeze))
	require.EqualValues(t, 32, us(partPeerSend))
	require.EqualValues(t, 64, us(partLog))
	require.EqualValues(t, 128, us(partGC))
	require.EqualValues(t, 256, us(partRuntimeOther))
	require.EqualValues(t, 512, us(partTargetOther))
	require.EqualValues(t, 1023, s.Total/time.Microsecond)
}
