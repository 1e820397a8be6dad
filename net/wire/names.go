package wire

import (
	"bufio"
	"unique"

	"github.com/miyamotohq/miyamoto/node"
)

// Bounds of a names table: it holds strings of at most maxNameLen bytes, and is
// emptied when it reaches maxNames, so a peer sending ever new values costs at most
// that much memory and a map lookup per field.
const (
	maxNameLen = 256
	maxNames   = 1024
)

// names keeps one copy of each short string it was asked for (the process's
// canonical one, so that values the node keeps are shared across streams too). A nil *names copies
// every time. Not safe for concurrent use.
type names struct {
	m map[string]string
	// list is the replica list last decoded through the table (decoder.replicas).
	list []node.NodeID
}

// get returns b as a string, the copy already kept when there is one.
func (t *names) get(b []byte) string {
	if t == nil || len(b) == 0 || len(b) > maxNameLen {
		return string(b)
	}
	if s, ok := t.m[string(b)]; ok { // the lookup does not allocate
		return s
	}
	if t.m == nil || len(t.m) >= maxNames {
		t.m = make(map[string]string)
	}
	s := unique.Make(string(b)).Value()
	t.m[s] = s
	return s
}

// canonical returns b as the process's one copy of that string (unique.Make), from
// the table when it holds it: everything the table keeps is canonical.
func (t *names) canonical(b []byte) string {
	if t != nil && len(b) <= maxNameLen {
		return t.get(b)
	}
	if len(b) == 0 {
		return ""
	}
	return unique.Make(string(b)).Value()
}

// FrameReader reads the frames of one stream, as ReadFrame, reusing its scratch
// space and sharing one copy of each value that recurs from message to message
// (node IDs, queues, URLs, methods, header names, content types), which the messages
// between two nodes repeat: decoding a Store then allocates little more than its
// task ID, name and body. Messages may share those strings with each other, never
// memory with the stream. Not safe for concurrent use.
type FrameReader struct {
	r     *bufio.Reader
	buf   []byte
	names names
}

// NewFrameReader returns a FrameReader of r.
func NewFrameReader(r *bufio.Reader) *FrameReader { return &FrameReader{r: r} }

// Read reads and decodes the next frame, with ReadFrame's errors.
func (fr *FrameReader) Read() (node.Message, error) {
	var err error
	fr.buf, err = readFrameBody(fr.r, fr.buf)
	if err != nil {
		return node.Message{}, err
	}
	m, err := decodeBodyNames(fr.buf, &fr.names)
	if cap(fr.buf) > keepFrameBytes {
		fr.buf = nil // a rare large frame does not stay allocated
	}
	return m, err
}

// keepFrameBytes is the largest scratch space a FrameReader keeps between frames.
const keepFrameBytes = 1 << 20

// WholeFrameBuffered reports whether the reader holds a whole frame already, so that
// Read would not wait for the stream.
func (fr *FrameReader) WholeFrameBuffered() bool {
	n := fr.r.Buffered()
	head, err := fr.r.Peek(min(n, headerLen))
	if err != nil {
		return false
	}
	size := FrameLen(head)
	return size >= 0 && size <= n
}
