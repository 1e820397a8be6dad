package main

import (
	"bufio"
	"io"
	"net"
	"sync"
	"time"
)

// Door is the one address every node is given for a node's peer port (in --peers,
// and as the node's own --peer-advertise, so the roster names it too): it accepts
// each connection, reads the dialer's node ID from the peer hello (net/peer:
// "MIYA" or "MIYS", the wire version, a one-byte length, the ID; the bytes go on
// unchanged), and hands the connection to the Proxy of the directed link from the
// dialer to this node. One address a node, the same for everyone, is what survives
// a roster change (the roster keeps one address per member, and every member
// adopts it); reading the hello keeps the faults per directed link.
type Door struct {
	ln   net.Listener
	to   int
	link func(from, to int) *Proxy // nil: the dialer is not a node of this run
	wg   sync.WaitGroup
}

// helloRead bounds how long a Door waits for a dialer's hello (net/peer sends it at
// once).
const helloRead = 5 * time.Second

// NewDoor listens on a free loopback port for node to.
func NewDoor(to int, link func(from, to int) *Proxy) (*Door, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &Door{ln: ln, to: to, link: link}
	d.wg.Add(1)
	go d.acceptLoop()
	return d, nil
}

// Addr is where the door listens.
func (d *Door) Addr() string { return d.ln.Addr().String() }

// Close stops accepting; the connections already handed on belong to their Proxy.
func (d *Door) Close() {
	d.ln.Close()
	d.wg.Wait()
}

func (d *Door) acceptLoop() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.route(c) }()
	}
}

// route reads c's hello and hands c, the hello's bytes still to be read, to the
// link's proxy; a connection without a hello naming a node of this run is reset.
func (d *Door) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(helloRead))
	r := bufio.NewReader(c)
	from, ok := peekDialer(r)
	c.SetReadDeadline(time.Time{})
	var p *Proxy
	if ok && from != d.to {
		p = d.link(from, d.to)
	}
	if p == nil {
		(&proxyConn{down: c}).reset()
		return
	}
	p.Handle(&bufferedConn{TCPConn: c.(*net.TCPConn), r: r})
}

// peekDialer reads, without consuming, the node ID a peer hello names, and gives
// its index.
func peekDialer(r *bufio.Reader) (int, bool) {
	const head = 6 // magic, version, length of the ID
	b, err := r.Peek(head)
	if err != nil {
		return 0, false
	}
	if magic := string(b[:4]); magic != "MIYA" && magic != "MIYS" {
		return 0, false
	}
	b, err = r.Peek(head + int(b[5]))
	if err != nil {
		return 0, false
	}
	i := nodeIndex(string(b[head:]))
	return i, i >= 0
}

// bufferedConn is a connection whose first bytes were read into r.
type bufferedConn struct {
	*net.TCPConn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
