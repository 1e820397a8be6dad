package sim

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"io"
	"strconv"

	"github.com/miyamotohq/miyamoto/node"
)

// TraceHeader is the first line of a trace: enough to re-run it.
type TraceHeader struct {
	Type     string    `json:"type"` // "header"
	Seed     uint64    `json:"seed"`
	Protocol string    `json:"protocol"`
	Build    string    `json:"build"`
	Scenario *Scenario `json:"scenario"`
}

// tracer writes one JSON line per event: true time in ns ("t"), node, kind, task,
// attempt and what else the kind needs. Lines are built by hand: tracing runs on every
// event and must stay cheap. Every line also feeds a SHA-256 for the D1 check.
type tracer struct {
	out  *bufio.Writer // nil: hash only
	hash hash.Hash
	buf  []byte
	// sink, when set, receives every line instead (replay compares them).
	sink  func(line []byte) bool
	lines int
}

func newTracer(w io.Writer) *tracer {
	t := &tracer{hash: sha256.New()}
	if w != nil {
		t.out = bufio.NewWriterSize(w, 1<<16)
	}
	return t
}

func (t *tracer) header(h TraceHeader) {
	b, err := json.Marshal(h)
	if err != nil {
		panic("sim: trace header: " + err.Error())
	}
	t.emit(b)
}

func (t *tracer) emit(line []byte) {
	t.lines++
	t.hash.Write(line)
	t.hash.Write([]byte{'\n'})
	if t.sink != nil {
		t.sink(line)
	}
	if t.out != nil {
		t.out.Write(line)
		t.out.WriteByte('\n')
	}
}

func (t *tracer) sum() string { return hex.EncodeToString(t.hash.Sum(nil)) }

func (t *tracer) flush() error {
	if t.out != nil {
		return t.out.Flush()
	}
	return nil
}

func (t *tracer) begin(now int64, nodeID node.NodeID, kind string) []byte {
	b := t.buf[:0]
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, now, 10)
	if nodeID != "" {
		b = append(b, `,"node":`...)
		b = strconv.AppendQuote(b, string(nodeID))
	}
	b = append(b, `,"kind":`...)
	b = strconv.AppendQuote(b, kind)
	return b
}

func appendStr(b []byte, key, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendQuote(b, v)
}

func appendInt(b []byte, key string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func (t *tracer) end(b []byte) {
	b = append(b, '}')
	t.buf = b
	t.emit(b)
}

func (t *tracer) message(now int64, kind string, m node.Message, why string) {
	b := t.begin(now, m.To, kind)
	b = appendStr(b, "task", m.TaskID)
	b = appendInt(b, "attempt", int64(m.Attempt))
	b = appendStr(b, "msg", m.Type.String())
	b = appendStr(b, "from", string(m.From))
	if m.Type == node.MsgClaimResp {
		if m.Granted {
			b = appendStr(b, "grant", "yes")
		} else {
			b = appendInt(b, "reject", int64(m.Reject))
		}
	}
	if why != "" {
		b = appendStr(b, "why", why)
	}
	t.end(b)
}

func (t *tracer) delivery(now int64, kind string, id node.NodeID, task string, attempt uint64, status int) {
	b := t.begin(now, id, kind)
	b = appendStr(b, "task", task)
	b = appendInt(b, "attempt", int64(attempt))
	if kind == "deliver_end" {
		b = appendInt(b, "status", int64(status))
	}
	t.end(b)
}

func (t *tracer) state(now int64, id node.NodeID, task string, attempt uint64, from, to node.TaskState) {
	b := t.begin(now, id, "state")
	b = appendStr(b, "task", task)
	b = appendInt(b, "attempt", int64(attempt))
	b = appendStr(b, "from", from.String())
	b = appendStr(b, "to", to.String())
	t.end(b)
}

// clock records a node's clock at the start: its offset from true time (ns) and its
// rate error (local time runs at 1+drift).
func (t *tracer) clock(id node.NodeID, offset int64, drift float64) {
	b := t.begin(0, id, "clock")
	b = appendInt(b, "offset", offset)
	b = append(b, `,"drift":`...)
	b = strconv.AppendFloat(b, drift, 'g', -1, 64)
	t.end(b)
}

func (t *tracer) nodeEvent(now int64, id node.NodeID, kind string) {
	t.end(t.begin(now, id, kind))
}

func (t *tracer) fault(now int64, kind, detail string) {
	b := t.begin(now, "", "fault")
	b = appendStr(b, "fault", kind)
	if detail != "" {
		b = appendStr(b, "detail", detail)
	}
	t.end(b)
}

func (t *tracer) enqueue(now int64, id node.NodeID, kind, task string, n int) {
	b := t.begin(now, id, kind)
	if task != "" {
		b = appendStr(b, "task", task)
	}
	b = appendInt(b, "request", int64(n))
	t.end(b)
}

// violation records a broken invariant: "task" is the first task involved, "tasks"
// (when more than one) all of them, "nodes" the nodes involved (for the timeline).
func (t *tracer) violation(now int64, inv string, tasks []string, nodes []node.NodeID, detail string) {
	b := t.begin(now, "", "violation")
	b = appendStr(b, "invariant", inv)
	if len(tasks) > 0 {
		b = appendStr(b, "task", tasks[0])
	}
	if len(tasks) > 1 {
		b = appendList(b, "tasks", tasks)
	}
	if len(nodes) > 0 {
		ids := make([]string, len(nodes))
		for i, n := range nodes {
			ids[i] = string(n)
		}
		b = appendList(b, "nodes", ids)
	}
	b = appendStr(b, "detail", detail)
	t.end(b)
}

func appendList(b []byte, key string, list []string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':', '[')
	for i, v := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, v)
	}
	return append(b, ']')
}
