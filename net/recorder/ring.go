package recorder

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// Header opens every file of a recording: what Replay needs besides the groups.
type Header struct {
	NodeID string
	Run    uint64 // one start of the process; a restart is the next run
	Seq    uint64 // the file's number in its run; 0 holds the start
	// Config is the node's configuration (gob drops CheckTaskURL, a function; the
	// daemon's URL policy below rebuilds it).
	Config      node.Config
	Durable     bool // whether the node's storage keeps records across a crash
	DenyPrivate bool
	AllowURLs   string
	Started     time.Time // the run's start, on the wall clock
}

// ring writes groups to the files of a recording, dropping the oldest file when the
// directory holds more than max bytes. The node's goroutine writes; a flusher
// goroutine pushes buffered groups to the file every flushEvery.
type ring struct {
	dir      string
	max      int64 // bytes the directory may hold
	fileSize int64 // a file is closed past this size
	hdr      Header

	mu    sync.Mutex
	f     *os.File
	w     *bufio.Writer
	size  int64 // bytes in the current file
	files []ringFile
	err   error // the first write error: recording stops, the node goes on
	stop  chan struct{}
	done  chan struct{}
}

type ringFile struct {
	name string
	size int64
}

// flushEvery bounds what a killed process loses of its recording.
const flushEvery = 100 * time.Millisecond

// minFileSize keeps the file count sane for a small --record-size.
const minFileSize = 64 << 10

// fileName names file seq of run.
func fileName(run, seq uint64) string { return fmt.Sprintf("r%06d-%06d.rec", run, seq) }

func parseFileName(name string) (run, seq uint64, ok bool) {
	n, err := fmt.Sscanf(name, "r%06d-%06d.rec", &run, &seq)
	return run, seq, err == nil && n == 2 && name == fileName(run, seq)
}

// openRing starts the next run in dir, creating it if needed.
func openRing(dir string, maxBytes int64, hdr Header) (*ring, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	r := &ring{dir: dir, max: maxBytes, fileSize: max(maxBytes/8, minFileSize), hdr: hdr,
		stop: make(chan struct{}), done: make(chan struct{})}
	for _, e := range entries {
		run, _, ok := parseFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		r.files = append(r.files, ringFile{e.Name(), info.Size()})
		r.hdr.Run = max(r.hdr.Run, run+1)
	}
	r.hdr.Run = max(r.hdr.Run, 1)
	sort.Slice(r.files, func(i, j int) bool { return r.files[i].name < r.files[j].name })
	if err := r.openFile(); err != nil {
		return nil, err
	}
	go r.flushLoop()
	return r, nil
}

// openFile starts file hdr.Seq of the run with its header. Called with mu held.
func (r *ring) openFile() error {
	var hdr bytes.Buffer
	if err := gob.NewEncoder(&hdr).Encode(r.hdr); err != nil {
		return fmt.Errorf("recording header: %w", err)
	}
	name := fileName(r.hdr.Run, r.hdr.Seq)
	f, err := os.OpenFile(filepath.Join(r.dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	r.f, r.w, r.size = f, bufio.NewWriterSize(f, 256<<10), 0
	r.files = append(r.files, ringFile{name: name})
	r.write(append([]byte(magic), appendFrame(nil, hdr.Bytes())...))
	return nil
}

// write appends b to the current file. Called with mu held.
func (r *ring) write(b []byte) {
	if r.err != nil {
		return
	}
	if _, err := r.w.Write(b); err != nil {
		r.err = err
		return
	}
	r.size += int64(len(b))
	r.files[len(r.files)-1].size = r.size
}

// writeGroup appends one framed group, moving to a new file when this one is full.
func (r *ring) writeGroup(frame []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil || r.f == nil {
		return
	}
	r.write(frame)
	if r.size >= r.fileSize {
		r.rotate()
	}
}

// rotate closes the current file, opens the next and drops the oldest files while
// the directory holds more than max. The current file is never dropped. Called
// with mu held.
func (r *ring) rotate() {
	if err := r.closeFile(); err != nil {
		r.err = err
		return
	}
	r.hdr.Seq++
	if err := r.openFile(); err != nil {
		r.err = err
		return
	}
	total := int64(0)
	for _, f := range r.files {
		total += f.size
	}
	for total > r.max && len(r.files) > 1 {
		old := r.files[0]
		if err := os.Remove(filepath.Join(r.dir, old.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.err = err
			return
		}
		total -= old.size
		r.files = r.files[1:]
	}
}

func (r *ring) closeFile() error {
	if r.f == nil {
		return nil
	}
	err := r.w.Flush()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	r.f, r.w = nil, nil
	return err
}

func (r *ring) flushLoop() {
	defer close(r.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.mu.Lock()
			if r.w != nil && r.err == nil {
				r.err = r.w.Flush()
			}
			r.mu.Unlock()
		}
	}
}

// close flushes and closes the current file; later groups are dropped.
func (r *ring) close() error {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.closeFile(); r.err == nil {
		r.err = err
	}
	return r.err
}
