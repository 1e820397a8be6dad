package node

import (
	"errors"
	"fmt"
)

// ErrOutcomeUnknown: no majority of replicas answered in time. The task may or may not
// have been stored; re-sending it with a task name is safe.
var ErrOutcomeUnknown = errors.New("no majority of replicas answered in time: the task may or may not be stored; re-sending it with a task name is safe")

// ErrJoining: the node started with Config.Join and is not a member yet.
var ErrJoining = errors.New("this node is joining the cluster and takes no task yet: retry through another member")

// ErrStopping: the node is shutting down and takes no new task.
var ErrStopping = errors.New("the node is shutting down")

// DuplicateNameError: a task with this name exists in the queue (or finished
// within the deduplication window). ID is that task's.
type DuplicateNameError struct {
	Queue, Name, ID string
}

func (e *DuplicateNameError) Error() string {
	return fmt.Sprintf("a task named %q already exists in queue %q (id %s)", e.Name, e.Queue, e.ID)
}

// ErrNotFound: this node does not hold the task.
var ErrNotFound = errors.New("task not found")

// FieldError is bad input, naming the field at fault.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Message) }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}
