package node

import "encoding/binary"

// tombArena holds the encoded tombs (tomb.go) back to back in chunks, so that a
// tomb costs its bytes and an 8-byte handle, not a string header and an
// allocation rounded up to its size class. Tombs are frozen and forgotten in about
// the same order (the order tasks finish), so a chunk empties as a whole and is
// dropped; a tomb thawed meanwhile leaves a hole until its chunk empties.
//
// A handle is the chunk's number (high 32 bits) and the tomb's offset in it (low
// 32 bits); a tomb starts with its length as a uvarint.
type tombArena struct {
	chunks []tombChunk
	free   []uint32 // numbers of dropped chunks, to reuse
	cur    uint32   // the chunk tombs are appended to (valid when len(chunks) > 0)
}

type tombChunk struct {
	buf  []byte // nil once dropped
	live int    // tombs in it not freed
	put  int    // tombs put in it
}

// tombChunkSize is the size of a chunk; a longer tomb (a dead task's large body)
// gets a chunk of its own.
const tombChunkSize = 64 << 10

// put stores a copy of rec and returns its handle.
func (a *tombArena) put(rec []byte) uint64 {
	need := binary.MaxVarintLen64 + len(rec)
	if len(a.chunks) == 0 || cap(a.chunks[a.cur].buf)-len(a.chunks[a.cur].buf) < need {
		a.cur = a.newChunk(max(tombChunkSize, need))
	}
	c := &a.chunks[a.cur]
	off := len(c.buf)
	c.buf = binary.AppendUvarint(c.buf, uint64(len(rec)))
	c.buf = append(c.buf, rec...)
	c.live++
	c.put++
	return uint64(a.cur)<<32 | uint64(off)
}

func (a *tombArena) newChunk(size int) uint32 {
	buf := make([]byte, 0, size)
	if k := len(a.free); k > 0 {
		num := a.free[k-1]
		a.free = a.free[:k-1]
		a.chunks[num] = tombChunk{buf: buf}
		return num
	}
	a.chunks = append(a.chunks, tombChunk{buf: buf})
	return uint32(len(a.chunks) - 1)
}

// get returns the tomb of handle h; the bytes are the arena's: read, never keep.
func (a *tombArena) get(h uint64) []byte {
	b := a.chunks[h>>32].buf[uint32(h):]
	l, k := binary.Uvarint(b)
	return b[k : k+int(l)]
}

// release frees the tomb of handle h, and its chunk once that holds no other
// (unless tombs are still appended to it). It returns the chunk's number and
// whether the chunk, not dropped, now holds less than a quarter of the tombs put
// in it (see relocate).
func (a *tombArena) release(h uint64) (num uint32, sparse bool) {
	num = uint32(h >> 32)
	c := &a.chunks[num]
	c.live--
	if c.live == 0 && num != a.cur {
		a.drop(num)
		return num, false
	}
	return num, num != a.cur && c.live*4 < c.put
}

func (a *tombArena) drop(num uint32) {
	a.chunks[num] = tombChunk{}
	a.free = append(a.free, num)
}

// relocate moves the tombs of chunk num that live says are still held to the
// chunk tombs are appended to, telling moved the new handle of each, and drops
// the chunk. live is given each tomb and its handle.
func (a *tombArena) relocate(num uint32, live func(rec []byte, h uint64) bool, moved func(rec []byte, h uint64)) {
	buf := a.chunks[num].buf
	for off := 0; off < len(buf); {
		l, k := binary.Uvarint(buf[off:])
		rec := buf[off+k : off+k+int(l)]
		if live(rec, uint64(num)<<32|uint64(off)) {
			moved(rec, a.put(rec))
		}
		off += k + int(l)
	}
	a.drop(num)
}
