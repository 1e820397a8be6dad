package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// joinFake is a fakeBackend with the join endpoint: it lists a member once it was
// asked twice, refuses when refuse is set.
type joinFake struct {
	fakeBackend
	asked  map[node.NodeID]int
	refuse error
}

func (f *joinFake) Join(_ context.Context, m node.Member) (*node.Roster, bool, error) {
	if f.refuse != nil {
		return nil, false, f.refuse
	}
	f.asked[m.ID]++
	members := []node.NodeID{"n1"}
	if f.asked[m.ID] > 1 {
		members = append(members, m.ID)
	}
	return node.NewRoster(uint64(len(members)), members, map[node.NodeID]string{"n1": "10.0.0.1:7088", m.ID: m.Addr}, "n1"), f.asked[m.ID] > 1, nil
}

// Remove removes a member once it was asked twice; n1 is the only member left
// (node.ErrLastMember).
func (f *joinFake) Remove(_ context.Context, id node.NodeID) (*node.Roster, bool, error) {
	if id == "n1" {
		return nil, false, node.ErrLastMember
	}
	f.asked[id]++
	members := []node.NodeID{"n1"}
	if f.asked[id] < 2 {
		members = append(members, id)
	}
	return node.NewRoster(uint64(f.asked[id]+1), members, nil, "n1"), f.asked[id] > 1, nil
}

// A removal is pending (202) until the roster no longer lists the member (200);
// the only member is refused with 409 naming the id.
func TestRemovePendingThenRemoved(t *testing.T) {
	f := &joinFake{asked: map[node.NodeID]int{}}
	h := NewHandler(f, Config{})
	w := do(t, h, "POST", "/v1/cluster/members/n2/remove", "application/json", "")
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	var ans RemoveAnswer
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &ans))
	require.Equal(t, "pending", ans.Status)
	require.Len(t, ans.Roster.Members, 2)

	w = do(t, h, "POST", "/v1/cluster/members/n2/remove", "application/json", "")
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &ans))
	require.Equal(t, "removed", ans.Status)
	require.Equal(t, []MemberAddr{{ID: "n1"}}, ans.Roster.Members)

	w = do(t, h, "POST", "/v1/cluster/members/n1/remove", "application/json", "")
	requireError(t, w, http.StatusConflict, "id")
	long := make([]byte, node.MaxNodeIDLen+1)
	for i := range long {
		long[i] = 'x'
	}
	w = do(t, h, "POST", "/v1/cluster/members/"+string(long)+"/remove", "application/json", "")
	requireError(t, w, http.StatusBadRequest, "id")
}

// A join is pending (202) until the roster lists the new node (200); the answer
// carries the roster with every member's peer address.
func TestJoinPendingThenMember(t *testing.T) {
	f := &joinFake{asked: map[node.NodeID]int{}}
	h := NewHandler(f, Config{})
	body := `{"id": "n2", "peer_addr": "10.0.0.2:7088"}`
	w := do(t, h, "POST", "/v1/cluster/join", "application/json", body)
	require.Equal(t, http.StatusAccepted, w.Code, w.Body.String())
	var ans JoinAnswer
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &ans))
	require.Equal(t, "pending", ans.Status)
	require.Equal(t, []MemberAddr{{ID: "n1", PeerAddr: "10.0.0.1:7088"}}, ans.Roster.Members)

	w = do(t, h, "POST", "/v1/cluster/join", "application/json", body)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &ans))
	require.Equal(t, "member", ans.Status)
	require.Equal(t, RosterView{Epoch: 2, Leader: "n1", Members: []MemberAddr{{ID: "n1", PeerAddr: "10.0.0.1:7088"}, {ID: "n2", PeerAddr: "10.0.0.2:7088"}}}, ans.Roster)
}

// Bad join requests answer 400 naming the field; a node that cannot let the
// cluster grow answers 409 saying why.
func TestJoinBadInput(t *testing.T) {
	h := NewHandler(&joinFake{asked: map[node.NodeID]int{}}, Config{})
	for body, field := range map[string]string{
		`{"peer_addr": "10.0.0.2:7088"}`:           "id",
		`{"id": "n2"}`:                             "peer_addr",
		`{"id": "n2", "peer_addr": "10.0.0.2"}`:    "peer_addr",
		`{"id": "n2", "peer_addr": ":7088"}`:       "peer_addr",
		`{"id": "n2", "peer_addr": "h:1", "x": 1}`: "body",
		`not json`: "body",
		`{"id": "n2", "peer_addr": "h:1"} {"id": 1}`: "body",
	} {
		w := do(t, h, "POST", "/v1/cluster/join", "application/json", body)
		requireError(t, w, http.StatusBadRequest, field)
	}
	refusing := NewHandler(&joinFake{refuse: fmt.Errorf("%w: give every node --cluster-secret", ErrJoinRefused)}, Config{})
	w := do(t, refusing, "POST", "/v1/cluster/join", "application/json", `{"id": "n2", "peer_addr": "h:1"}`)
	require.Equal(t, http.StatusConflict, w.Code)
	require.Contains(t, w.Body.String(), "--cluster-secret")
}
