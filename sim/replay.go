package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ReplayResult says whether a trace reproduced.
type ReplayResult struct {
	Header     TraceHeader
	Lines      int  // lines in the recorded trace
	Reproduced bool // every line matched and none was missing or extra
	// Divergence describes the first difference when not reproduced.
	DivergedAt int // line number (1-based) of the first difference
	Want, Got  string
	Result     *Result
}

// Replay re-runs the trace in r (seed, scenario and protocol from its header) and
// compares the new trace with it line by line.
func Replay(r io.Reader) (*ReplayResult, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("empty trace")
	}
	first := append([]byte(nil), sc.Bytes()...)
	var h TraceHeader
	if err := json.Unmarshal(first, &h); err != nil || h.Type != "header" || h.Scenario == nil {
		return nil, errors.New("the first line is not a trace header (type \"header\" with seed and scenario)")
	}
	h.Scenario.fillDefaults()
	if err := h.Scenario.Validate(); err != nil {
		return nil, fmt.Errorf("the trace's scenario is invalid: %w", err)
	}
	want := [][]byte{first}
	for sc.Scan() {
		want = append(want, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := &ReplayResult{Header: h, Lines: len(want), Reproduced: true}
	n := 0
	sink := func(line []byte) bool {
		n++
		if !out.Reproduced {
			return false
		}
		if n == 1 {
			return true // the header names the build, which may differ
		}
		if n > len(want) || !bytes.Equal(line, want[n-1]) {
			out.Reproduced, out.DivergedAt, out.Got = false, n, string(line)
			if n <= len(want) {
				out.Want = string(want[n-1])
			}
		}
		return out.Reproduced
	}
	res, err := Run(h.Scenario, h.Seed, Options{Protocol: h.Protocol, lineSink: sink})
	if err != nil {
		return nil, err
	}
	out.Result = res
	if out.Reproduced && n != len(want) {
		out.Reproduced, out.DivergedAt = false, n+1
		if n < len(want) {
			out.Want = string(want[n])
		}
	}
	return out, nil
}
