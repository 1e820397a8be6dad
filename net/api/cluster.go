package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/miyamotohq/miyamoto/node"
)

// MembershipBackend is an optional ability of a Backend: the cluster's roster and
// joins (POST /v1/cluster/join, what `serve --join` asks any member).
type MembershipBackend interface {
	// Join asks the cluster to add m. It returns the roster this node holds, and
	// whether it lists m (at m's address) yet: if not, the request went to the
	// leader and the joiner asks again. ErrJoinRefused: this node cannot let the
	// cluster grow (the message says why).
	Join(ctx context.Context, m node.Member) (r *node.Roster, listed bool, err error)
	// Remove asks the cluster to remove member id (POST
	// /v1/cluster/members/{id}/remove). It returns the roster this node holds, and
	// whether it no longer lists id: if it still does, the request went to the
	// leader and the caller asks again. node.ErrLastMember: id is the only member.
	Remove(ctx context.Context, id node.NodeID) (r *node.Roster, removed bool, err error)
}

// ErrJoinRefused: this node will not let the cluster grow as it is configured.
var ErrJoinRefused = errors.New("this cluster cannot take a new member")

// RosterView is a roster in the API's answers.
type RosterView struct {
	Epoch   uint64       `json:"epoch"`
	Leader  string       `json:"leader,omitempty"`
	Members []MemberAddr `json:"members"`
}

// MemberAddr is one member of a roster and where its peer port listens.
type MemberAddr struct {
	ID       string `json:"id"`
	PeerAddr string `json:"peer_addr,omitempty"`
}

// ViewRoster turns a roster into its API view.
func ViewRoster(r *node.Roster) RosterView {
	v := RosterView{Epoch: r.Epoch, Leader: string(r.Leader), Members: []MemberAddr{}}
	for _, m := range r.Members {
		v.Members = append(v.Members, MemberAddr{ID: string(m.ID), PeerAddr: m.Addr})
	}
	return v
}

// joinBody is POST /v1/cluster/join's body.
type joinBody struct {
	ID       string `json:"id"`
	PeerAddr string `json:"peer_addr"`
}

// JoinAnswer is POST /v1/cluster/join's answer: status "member" (200) once the
// roster lists the new node, "pending" (202) while the leader adds it.
type JoinAnswer struct {
	Status string     `json:"status"`
	Roster RosterView `json:"roster"`
}

// RemoveAnswer is POST /v1/cluster/members/{id}/remove's answer: status
// "removed" (200) once the roster no longer lists the member (also when it never
// did: a removal is idempotent), "pending" (202) while the leader removes it.
type RemoveAnswer struct {
	Status string     `json:"status"`
	Roster RosterView `json:"roster"`
}

func (s *server) clusterRoutes(mux *http.ServeMux, mb MembershipBackend) {
	mux.HandleFunc("POST /v1/cluster/members/{id}/remove", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if id == "" || len(id) > node.MaxNodeIDLen {
			writeError(w, http.StatusBadRequest, "id", "must be the member's node ID (1-100 bytes)")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		roster, removed, err := mb.Remove(ctx, node.NodeID(id))
		switch {
		case errors.Is(err, node.ErrLastMember):
			writeError(w, http.StatusConflict, "id", err.Error())
		case err != nil:
			writeNodeError(w, err)
		case removed:
			writeJSON(w, http.StatusOK, RemoveAnswer{Status: "removed", Roster: ViewRoster(roster)})
		default:
			setRetryAfter(w, 0)
			writeJSON(w, http.StatusAccepted, RemoveAnswer{Status: "pending", Roster: ViewRoster(roster)})
		}
	})
	mux.HandleFunc("POST /v1/cluster/join", func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r, 64<<10)
		if !ok {
			return
		}
		m, err := parseJoin(body)
		if err != nil {
			writeNodeError(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
		defer cancel()
		roster, listed, err := mb.Join(ctx, m)
		switch {
		case errors.Is(err, ErrJoinRefused):
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		case err != nil:
			writeNodeError(w, err)
		case listed:
			writeJSON(w, http.StatusOK, JoinAnswer{Status: "member", Roster: ViewRoster(roster)})
		default:
			setRetryAfter(w, 0)
			writeJSON(w, http.StatusAccepted, JoinAnswer{Status: "pending", Roster: ViewRoster(roster)})
		}
	})
}

// parseJoin reads a join request: an ID and the host:port of its peer port.
func parseJoin(body []byte) (node.Member, error) {
	var b joinBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return node.Member{}, &node.FieldError{Field: "body", Message: "must be a JSON object with id and peer_addr: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return node.Member{}, &node.FieldError{Field: "body", Message: "has data after the JSON object"}
	}
	if b.ID == "" || len(b.ID) > node.MaxNodeIDLen {
		return node.Member{}, &node.FieldError{Field: "id", Message: "must be the joining node's --node-id (1-100 bytes)"}
	}
	if host, port, err := net.SplitHostPort(b.PeerAddr); err != nil || host == "" || port == "" || len(b.PeerAddr) > node.MaxPeerAddrLen {
		return node.Member{}, &node.FieldError{Field: "peer_addr", Message: "must be the joining node's peer address, host:port, that the members can reach, not " + quote(b.PeerAddr)}
	}
	return node.Member{ID: node.NodeID(b.ID), Addr: b.PeerAddr}, nil
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }
