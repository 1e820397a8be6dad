package node

import (
	"fmt"
	"strings"
)

// Reserved header names. A task's headers reach its worker as given, so a name that would change how the
// request is framed or routed, or that the webhook sender sets itself, is refused at
// enqueue (400, field "headers.<name>"), never silently dropped or overwritten at
// delivery. Names are compared after folding case and turning '_' into '-': some
// servers and CGI gateways read X_Task_Id as X-Task-Id.

// hopByHop are the names that describe one connection, not the request (RFC 9110
// 7.6.1, plus the proxy ones), and those the HTTP client computes itself.
var hopByHop = map[string]bool{
	"connection":          true,
	"keep-alive":          true,
	"proxy-connection":    true,
	"proxy-authorization": true,
	"proxy-authenticate":  true,
	"upgrade":             true,
	"te":                  true,
	"trailer":             true,
	"transfer-encoding":   true,
	"expect":              true,
	"host":                true,
	"content-length":      true,
}

// senderPrefixes are the families of headers the webhook sender writes on every
// delivery (net/webhook: X-Task-*, X-Miyamoto-Node, the Standard Webhooks
// signature headers webhook-*), which a worker must be able to trust.
var senderPrefixes = []string{"x-task-", "x-miyamoto-", "webhook-"}

// normalHeaderName folds a header name as the reserved-name check compares it.
func normalHeaderName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// CheckTaskHeaderName returns a FieldError naming the header when a task may not
// set it, nil when it may. Content-Type is the task's own field, not a header. The
// HTTP API checks it at enqueue, and a replica again on every task a peer sends it
// (see door.go), so that both hold tasks to one rule.
func CheckTaskHeaderName(name string) error {
	n := normalHeaderName(name)
	field := "headers." + name
	switch {
	case hopByHop[n]:
		return &FieldError{Field: field, Message: "is a hop-by-hop or framing header, which the node's HTTP client sets itself; a task may not set it"}
	case n == "user-agent":
		return &FieldError{Field: field, Message: "is set by the node on every delivery (miyamoto/<version>); a task may not set it"}
	}
	for _, p := range senderPrefixes {
		if strings.HasPrefix(n, p) {
			return &FieldError{Field: field, Message: fmt.Sprintf("is reserved: the node sets %s* headers on every delivery, so that a worker can trust them", headerPrefixName(p))}
		}
	}
	return nil
}

// headerPrefixName spells a reserved prefix as the README does (X-Task-, Webhook-).
func headerPrefixName(p string) string {
	parts := strings.Split(p, "-")
	for i, s := range parts {
		if s != "" {
			parts[i] = strings.ToUpper(s[:1]) + s[1:]
		}
	}
	return strings.Join(parts, "-")
}
