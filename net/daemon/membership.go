package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/net/api"
	"github.com/miyamotohq/miyamoto/net/peer"
	"github.com/miyamotohq/miyamoto/net/recorder"
	"github.com/miyamotohq/miyamoto/node"
)

// Membership in the daemon. The node keeps the roster (node/roster.go, leader.go);
// the daemon reaches its members: every roster the node adopts, and every roster
// it sends (a proposal reaches a joiner before the roster lists it), makes the
// members' peer addresses peers of the transport. A node alone has no transport
// until a node asks to join it (POST /v1/cluster/join): it then opens its peer
// port, under the same rule as --peers (CheckPeerExposure). A node started with
// --join asks the member it was given every second, until its roster lists it;
// each answer names the members, whose hellos it then accepts.

// joinEvery is how often a joining node asks again.
const joinEvery = time.Second

// clusterNetwork is the node's Network: the peer transport, once there is one
// (before, a node alone sends to nobody).
type clusterNetwork struct{ d *Daemon }

func (c *clusterNetwork) Send(m node.Message) {
	t := c.d.transport()
	if t == nil {
		return
	}
	if m.Roster != nil {
		c.d.reach(m.Roster)
	}
	t.Send(m)
}

// rosterObserver makes the members of every roster the node adopts reachable.
type rosterObserver struct{ d *Daemon }

func (o rosterObserver) TaskStateChanged(*node.Task, node.TaskState, node.TaskState, uint64) {}

func (o rosterObserver) RosterChanged(self node.NodeID, r *node.Roster) {
	o.d.log.Info("roster", "epoch", r.Epoch, "leader", string(r.Leader), "members", len(r.Members))
	o.d.roster.Store(r)
	o.d.reach(r)
}

// reach adds every member of r with an address as a peer of the transport.
func (d *Daemon) reach(r *node.Roster) {
	t := d.transport()
	if t == nil {
		return
	}
	for _, m := range r.Members {
		if m.Addr == "" || m.ID == node.NodeID(d.cfg.NodeID) {
			continue
		}
		if _, err := t.AddPeer(m.ID, m.Addr); err != nil {
			d.log.Warn("a roster names a member the transport cannot reach", "member", string(m.ID), "err", err)
		}
	}
}

func (d *Daemon) transport() *peer.Transport { return d.tr.Load() }

func (d *Daemon) setTransport(t *peer.Transport) { d.tr.Store(t) }

// newTransport builds the peer transport with these peers (not started).
func (d *Daemon) newTransport(peers map[node.NodeID]string) (*peer.Transport, error) {
	var secret []byte
	if d.cfg.ClusterSecret != "" {
		secret = []byte(d.cfg.ClusterSecret)
	}
	var peerTLS *tls.Config
	if d.cfg.PeerTLS.Enabled() {
		var err error
		if peerTLS, err = d.cfg.PeerTLS.Load(); err != nil {
			return nil, err
		}
	}
	return peer.NewBatched(peer.Config{Self: node.NodeID(d.cfg.NodeID), Listen: d.cfg.PeerAddr, Peers: peers, ClusterSecret: secret, TLS: peerTLS, Logger: d.cfg.Logger.With("component", "peer")},
		d.postMessages)
}

// stepMessage is one peer message's input on the node's goroutine.
func (d *Daemon) stepMessage(n *node.Node, m node.Message) {
	d.rec.Step(m)
	n.Step(m)
}

// ensureTransport opens the peer port of a node alone when a node asks to join.
func (d *Daemon) ensureTransport() error {
	d.trMu.Lock()
	defer d.trMu.Unlock()
	if d.transport() != nil {
		return nil
	}
	cfg := d.cfg
	cfg.Join = "growing" // the rule of a cluster of several
	if err := CheckPeerExposure(cfg); err != nil && !cfg.InsecurePeers {
		return fmt.Errorf("%w: %v", api.ErrJoinRefused, err)
	}
	t, err := d.newTransport(nil)
	if err != nil {
		return err
	}
	if err := t.Start(); err != nil {
		return fmt.Errorf("%w: opening the peer port: %v", api.ErrJoinRefused, err)
	}
	d.setTransport(t)
	d.log.Info("a node asks to join: peer port open", "peer_addr", d.cfg.PeerAddr)
	return nil
}

// closeTransport flushes and closes the transport, if any.
func (d *Daemon) closeTransport(ctx context.Context) {
	d.trMu.Lock()
	defer d.trMu.Unlock()
	if t := d.transport(); t != nil {
		t.Flush(ctx)
		t.Close()
	}
}

var _ api.MembershipBackend = backend{}

// Join asks the node to add m (POST /v1/cluster/join).
func (b backend) Join(ctx context.Context, m node.Member) (*node.Roster, bool, error) {
	if err := b.d.ensureTransport(); err != nil {
		return nil, false, err
	}
	var roster *node.Roster
	var listed bool
	var joinErr error
	err := b.d.drv.Do(ctx, func(n *node.Node) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpJoin, Member: &m})
		n.Join(m, func(r *node.Roster, err error) { listed, joinErr = r != nil, err })
		roster = n.Roster()
	})
	if err != nil {
		return nil, false, err
	}
	if joinErr != nil && !errors.Is(joinErr, node.ErrJoinPending) {
		return nil, false, joinErr
	}
	b.d.reach(roster)
	return roster, listed, nil
}

// Remove asks the node to remove member id (POST /v1/cluster/members/{id}/remove).
func (b backend) Remove(ctx context.Context, id node.NodeID) (*node.Roster, bool, error) {
	var roster *node.Roster
	var removed bool
	var removeErr error
	err := b.d.drv.Do(ctx, func(n *node.Node) {
		b.d.rec.Call(recorder.Call{Op: recorder.OpRemove, ID: string(id)})
		n.Remove(id, func(r *node.Roster, err error) { removed, removeErr = r != nil, err })
		roster = n.Roster()
	})
	if err != nil {
		return nil, false, err
	}
	if removeErr != nil && !errors.Is(removeErr, node.ErrRemovePending) {
		return nil, false, removeErr
	}
	return roster, removed, nil
}

// joinLoop asks the member given by --join to add this node, every joinEvery,
// until a roster listed it or the daemon stops. It stops for good once listed:
// a node removed before the loop looked again (a removal within a second of the
// join) must not ask to be added back.
func (d *Daemon) joinLoop() {
	defer close(d.joinDone)
	url := strings.TrimSuffix(d.cfg.Join, "/")
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	url += "/v1/cluster/join"
	body, _ := json.Marshal(map[string]string{"id": d.cfg.NodeID, "peer_addr": d.cfg.PeerAdvertise})
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		if d.joined() {
			d.log.Info("joined the cluster", "via", d.cfg.Join)
			return
		}
		if err := d.askToJoin(client, url, body); err != nil {
			d.log.Warn("asking to join", "via", d.cfg.Join, "err", err)
		}
		select {
		case <-d.joinCtx.Done():
			return
		case <-time.After(joinEvery):
		}
	}
}

// joined reports whether a roster listed the node (it may have been removed since).
func (d *Daemon) joined() bool {
	ctx, cancel := context.WithTimeout(d.joinCtx, time.Second)
	defer cancel()
	in := false
	d.drv.Do(ctx, func(n *node.Node) { in = n.Roster().Epoch > 0 && !n.Joining() })
	return in
}

// askToJoin posts one join request and makes the members it names peers.
func (d *Daemon) askToJoin(client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(d.joinCtx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if len(d.cfg.APITokens) > 0 {
		req.Header.Set("Authorization", "Bearer "+d.cfg.APITokens[0])
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ans struct {
		api.JoinAnswer
		Error string `json:"error"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&ans); err != nil {
		return fmt.Errorf("HTTP %d, not a join answer: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, ans.Error)
	}
	t := d.transport()
	for _, m := range ans.Roster.Members {
		if m.PeerAddr != "" && m.ID != d.cfg.NodeID && t != nil {
			t.AddPeer(node.NodeID(m.ID), m.PeerAddr)
		}
	}
	return nil
}
