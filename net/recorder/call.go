package recorder

import (
	"fmt"

	"github.com/miyamotohq/miyamoto/node"
)

// Call is an API request (or the daemon's own call) that changes the node or may
// send messages, as the daemon passes it to the node: Op names the node's method,
// the other fields are its arguments. Reads of the node's state that change nothing
// are not recorded.
type Call struct {
	Op       string               `json:"op"`
	Enqueue  *node.EnqueueRequest `json:"enqueue,omitempty"`
	ID       string               `json:"id,omitempty"` // task ID, queue, schedule or member ID
	Config   *node.QueueConfig    `json:"config,omitempty"`
	Explicit node.SettingFields   `json:"explicit,omitempty"`
	Paused   bool                 `json:"paused,omitempty"`
	Purge    bool                 `json:"purge,omitempty"`
	Schedule *node.Schedule       `json:"schedule,omitempty"`
	State    node.TaskState       `json:"state,omitempty"`
	After    string               `json:"after,omitempty"`
	Limit    int                  `json:"limit,omitempty"`
	Member   *node.Member         `json:"member,omitempty"` // OpJoin
}

// The operations of Call.
const (
	OpEnqueue        = "enqueue"
	OpLookup         = "lookup"
	OpDescribe       = "describe"
	OpCancel         = "cancel"
	OpSetQueue       = "set-queue"
	OpPurgeQueue     = "purge-queue"
	OpDeleteQueue    = "delete-queue"
	OpPutSchedule    = "put-schedule"
	OpDeleteSchedule = "delete-schedule"
	OpCountCluster   = "count-cluster"
	OpListCluster    = "list-cluster"
	OpDrain          = "drain"
	OpJoin           = "join"   // a node asks to join (POST /v1/cluster/join)
	OpRemove         = "remove" // remove member ID (POST /v1/cluster/members/{id}/remove)
	// OpCompactionPolicy: the daemon's compaction takes the node's policy, which
	// clears what the node noted for the next one.
	OpCompactionPolicy = "compaction-policy"
)

// apply makes the call on n, dropping its reply (Replay compares what the node did,
// and the reply is made of that) but for a queue change's, which obs hears of.
func (c Call) apply(n *node.Node, obs *observer) error {
	switch c.Op {
	case OpEnqueue:
		if c.Enqueue == nil {
			return fmt.Errorf("recording: an enqueue without its request")
		}
		n.Enqueue(*c.Enqueue, func(node.EnqueueResult) {})
	case OpLookup:
		n.Lookup(c.ID, func(node.TaskStatus, error) {})
	case OpDescribe:
		n.Describe(c.ID, func(node.TaskStatus, error) {})
	case OpCancel:
		n.Cancel(c.ID, func(node.TaskState, error) {})
	case OpSetQueue:
		if c.Config == nil {
			return fmt.Errorf("recording: a queue change without its settings")
		}
		put := obs.queuePut(c.Op, c.ID, c.Paused)
		n.SetQueue(c.ID, *c.Config, c.Explicit, c.Paused, func(s node.QueueSetting, err error) { obs.queueAnswered(put, s, err) })
	case OpPurgeQueue:
		put := obs.queuePut(c.Op, c.ID, false)
		n.PurgeQueue(c.ID, func(s node.QueueSetting, _ int, err error) { obs.queueAnswered(put, s, err) })
	case OpDeleteQueue:
		put := obs.queuePut(c.Op, c.ID, false)
		n.DeleteQueue(c.ID, c.Purge, func(s node.QueueSetting, _ int, err error) { obs.queueAnswered(put, s, err) })
	case OpPutSchedule:
		if c.Schedule == nil {
			return fmt.Errorf("recording: a schedule change without its schedule")
		}
		n.PutSchedule(*c.Schedule, func(node.Schedule, error) {})
	case OpDeleteSchedule:
		n.DeleteSchedule(c.ID, func(node.Schedule, error) {})
	case OpCountCluster:
		n.CountCluster(func(node.ClusterCounts) {})
	case OpListCluster:
		n.ListCluster(c.ID, c.State, c.After, c.Limit, func([]node.TaskStatus, []node.NodeID) {})
	case OpDrain:
		n.Drain()
	case OpJoin:
		if c.Member == nil {
			return fmt.Errorf("recording: a join without its member")
		}
		n.Join(*c.Member, func(*node.Roster, error) {})
	case OpRemove:
		n.Remove(node.NodeID(c.ID), func(*node.Roster, error) {})
	case OpCompactionPolicy:
		n.CompactionPolicy()
	default:
		return fmt.Errorf("recording: unknown API call %q", c.Op)
	}
	return nil
}
