package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// limits bounds what one enqueue may carry; NewHandler fills it from Config.
// Every limit is enforced while the body is parsed, before the work (and the
// allocations) it bounds: a body of a million tiny params stops at the first one
// over the limit.
type limits struct {
	url         int // bytes in the task URL
	params      int // form params: pairs sent to the worker (a JSON array counts each element)
	headers     int // entries in a JSON task's headers
	headerBytes int // bytes of names and values in a JSON task's headers
}

// taskMethods are the methods a task may use (App Engine's push tasks allow these
// but PATCH). Anything else, CONNECT and TRACE included, is refused at enqueue:
// accepted, it would only fail at every attempt.
var taskMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}

// maxDeliveredURL bounds the URL of a GET, HEAD or DELETE task with its params in
// the query string, as it will be delivered.
const maxDeliveredURL = 8 << 10

// parseTask turns a POST /{queue} body into an enqueue request. Two formats, as in
// the original Miyamoto:
//
//   - a form (application/x-www-form-urlencoded): task.url, task.method,
//     task.countdown (seconds), task.eta (Unix seconds), task.name; every other field
//     goes to the worker as the form body, in the order it was sent;
//   - a JSON object: url, method, params (sent as a form), countdown, eta, name,
//     headers, body (a string is sent as it is; any other JSON value as JSON).
//
// A body that starts with '{' is read as JSON whatever its Content-Type says: the
// original README's own example sends "applicatoin/json". Every error is a
// *node.FieldError; a request it returns is within lim and has a method of
// taskMethods in upper case (or none), but still needs node.ValidateRequest.
func parseTask(contentType string, body []byte, lim limits) (node.EnqueueRequest, error) {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		return parseJSON(trimmed, lim)
	case strings.Contains(ct, "json"):
		return parseJSON(trimmed, lim)
	case strings.HasPrefix(ct, "multipart/"):
		return node.EnqueueRequest{}, &node.FieldError{Field: "Content-Type", Message: "multipart bodies are not supported: send a form (application/x-www-form-urlencoded) or a JSON object"}
	}
	return parseForm(body, lim)
}

// decodeTask reads the request to enqueue in queue from a POST /{queue} body:
// parseTask, node.ValidateRequest, then the checks of the URL the node does not
// make. A request it returns can be delivered (its method, URL and headers are
// ones net/http sends) and is within lim.
func decodeTask(queue, contentType string, body []byte, lim limits) (node.EnqueueRequest, error) {
	req, err := parseTask(contentType, body, lim)
	if err != nil {
		return req, err
	}
	req.Queue = queue
	if err := node.ValidateRequest(&req); err != nil {
		return req, err
	}
	if err := checkDeliveredURL(req); err != nil {
		return req, err
	}
	return req, checkParsedURL(req.URL)
}

// checkParsedURL refuses the URLs node.ValidateRequest lets through that no
// delivery could use: those net/url cannot parse ("http://w/%zz", "http://w:x/")
// and those without a host name ("http://:80/" would go to this machine).
func checkParsedURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		msg := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			msg = ue.Err.Error() // without the URL again
		}
		return &node.FieldError{Field: "url", Message: "is not a valid URL: " + msg}
	}
	if u.Hostname() == "" {
		return &node.FieldError{Field: "url", Message: "must name a host"}
	}
	return nil
}

func parseForm(body []byte, lim limits) (node.EnqueueRequest, error) {
	var req node.EnqueueRequest
	var rest strings.Builder
	// Room for a typical form's fields at once, not for any body: a huge one is
	// cut at the params limit.
	rest.Grow(min(len(body), 512))
	params := 0
	seen := map[string]bool{}
	// A bounded split: no slice of every pair (strings.Split, url.ParseQuery) is
	// built before the params limit can stop the loop.
	for s := string(body); s != ""; {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return req, &node.FieldError{Field: k, Message: "is not valid form encoding"}
		}
		if !strings.HasPrefix(key, "task.") {
			if params++; params > lim.params {
				return req, tooManyParams(lim.params)
			}
			if rest.Len() > 0 {
				rest.WriteByte('&')
			}
			rest.WriteString(pair)
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return req, &node.FieldError{Field: key, Message: "is not valid form encoding"}
		}
		if seen[key] {
			return req, &node.FieldError{Field: key, Message: "is given twice"}
		}
		seen[key] = true
		switch key {
		case "task.url":
			if err := checkURLLength(val, lim.url); err != nil {
				return req, err
			}
			req.URL = val
		case "task.method":
			m, err := taskMethod(key, val)
			if err != nil {
				return req, err
			}
			req.Method = m
		case "task.name":
			req.Name = val
		case "task.countdown":
			d, err := seconds(val)
			if err != nil {
				return req, &node.FieldError{Field: key, Message: err.Error()}
			}
			req.Countdown = d
		case "task.eta":
			t, err := unixSeconds(val)
			if err != nil {
				return req, &node.FieldError{Field: key, Message: err.Error()}
			}
			req.ETA = t
		default:
			return req, &node.FieldError{Field: key, Message: "is not a task field (task.url, task.method, task.countdown, task.eta, task.name)"}
		}
	}
	if !seen["task.url"] {
		return req, &node.FieldError{Field: "task.url", Message: "is required"}
	}
	req.Body = []byte(rest.String())
	req.ContentType = "application/x-www-form-urlencoded"
	return req, nil
}

// jsonTask is the JSON form of a task. Params and headers stay raw until
// parseParams and parseHeaders walk them under their limits: decoding them into
// maps would allocate every entry first.
type jsonTask struct {
	URL       *string         `json:"url"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params"`
	Countdown json.RawMessage `json:"countdown"`
	ETA       json.RawMessage `json:"eta"`
	Name      string          `json:"name"`
	Headers   json.RawMessage `json:"headers"`
	Body      json.RawMessage `json:"body"`
}

func parseJSON(b []byte, lim limits) (node.EnqueueRequest, error) {
	var req node.EnqueueRequest
	var jt jsonTask
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&jt); err != nil {
		return req, jsonFieldError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, &node.FieldError{Field: "body", Message: "has data after the JSON object"}
	}
	if jt.URL == nil {
		return req, &node.FieldError{Field: "url", Message: "is required"}
	}
	if err := checkURLLength(*jt.URL, lim.url); err != nil {
		return req, err
	}
	method, err := taskMethod("method", jt.Method)
	if err != nil {
		return req, err
	}
	req.URL, req.Method, req.Name = *jt.URL, method, jt.Name
	if jt.Countdown != nil {
		d, err := seconds(numberText(jt.Countdown))
		if err != nil {
			return req, &node.FieldError{Field: "countdown", Message: err.Error()}
		}
		req.Countdown = d
	}
	if jt.ETA != nil {
		t, err := unixSeconds(numberText(jt.ETA))
		if err != nil {
			return req, &node.FieldError{Field: "eta", Message: err.Error()}
		}
		req.ETA = t
	}
	headers, err := parseHeaders(jt.Headers, lim)
	if err != nil {
		return req, err
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if strings.EqualFold(k, "Content-Type") {
			req.ContentType = headers[k]
			continue
		}
		req.Headers = append(req.Headers, node.Header{Name: k, Value: headers[k]})
	}
	hasParams := jt.Params != nil && !isNull(jt.Params)
	if err := checkBodyless(method, jt.Body, req.ContentType); err != nil {
		return req, err
	}
	switch {
	case len(jt.Body) > 0 && hasParams:
		return req, &node.FieldError{Field: "body", Message: "give params or body, not both"}
	case len(jt.Body) > 0:
		var s string
		if err := json.Unmarshal(jt.Body, &s); err == nil {
			req.Body = []byte(s)
			if req.ContentType == "" {
				req.ContentType = "text/plain; charset=utf-8"
			}
		} else {
			req.Body = append([]byte(nil), jt.Body...)
			if req.ContentType == "" {
				req.ContentType = "application/json"
			}
		}
	case hasParams:
		form, err := parseParams(jt.Params, lim.params)
		if err != nil {
			return req, err
		}
		req.Body = []byte(form)
		if req.ContentType == "" {
			req.ContentType = "application/x-www-form-urlencoded"
		}
	}
	return req, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// parseParams form-encodes a JSON object of params with keys sorted (JSON objects
// have no order; a key given twice keeps its last value). Values may be strings,
// numbers, booleans, null (an empty value) or arrays of those; each array element
// is one param, and an empty array counts as one. It walks the object token by
// token and stops at the first param over limit.
func parseParams(raw json.RawMessage, limit int) (string, error) {
	const what = "must be a string, number, boolean or an array of those"
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := expectObject(dec, "params"); err != nil {
		return "", err
	}
	v := url.Values{}
	n := 0
	for dec.More() {
		k, err := objectKey(dec, "params")
		if err != nil {
			return "", err
		}
		tok, err := dec.Token()
		if err != nil {
			return "", badJSON("params." + k)
		}
		if d, ok := tok.(json.Delim); ok {
			if d != '[' {
				return "", &node.FieldError{Field: "params." + k, Message: what}
			}
			var vals []string
			for dec.More() {
				if n++; n > limit {
					return "", tooManyParams(limit)
				}
				e, err := dec.Token()
				if err != nil {
					return "", badJSON("params." + k)
				}
				s, ok := scalar(e)
				if !ok {
					return "", &node.FieldError{Field: "params." + k, Message: what}
				}
				vals = append(vals, s)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return "", badJSON("params." + k)
			}
			if len(vals) == 0 {
				if n++; n > limit {
					return "", tooManyParams(limit)
				}
			}
			v[k] = vals
			continue
		}
		if n++; n > limit {
			return "", tooManyParams(limit)
		}
		s, ok := scalar(tok)
		if !ok {
			return "", &node.FieldError{Field: "params." + k, Message: what}
		}
		v[k] = []string{s}
	}
	return v.Encode(), nil
}

// parseHeaders reads a JSON object of header names to string values (null is an
// empty value; a name given twice keeps its last value), stopping at the first
// entry over lim.headers or byte over lim.headerBytes. Names must be HTTP tokens
// and values free of control characters, or no delivery could ever send them.
// Null or absent headers are no headers.
func parseHeaders(raw json.RawMessage, lim limits) (map[string]string, error) {
	if raw == nil || isNull(raw) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := expectObject(dec, "headers"); err != nil {
		return nil, err
	}
	m := map[string]string{}
	n, size := 0, 0
	for dec.More() {
		k, err := objectKey(dec, "headers")
		if err != nil {
			return nil, err
		}
		if n++; n > lim.headers {
			return nil, &node.FieldError{Field: "headers", Message: fmt.Sprintf("has more than %d headers", lim.headers)}
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, badJSON("headers." + k)
		}
		var val string
		switch x := tok.(type) {
		case string:
			val = x
		case nil:
		default:
			return nil, &node.FieldError{Field: "headers." + k, Message: "must be a JSON string"}
		}
		if size += len(k) + len(val); size > lim.headerBytes {
			return nil, &node.FieldError{Field: "headers", Message: fmt.Sprintf("are larger than %d bytes (names and values)", lim.headerBytes)}
		}
		if !node.ValidHeaderName(k) {
			return nil, &node.FieldError{Field: "headers", Message: fmt.Sprintf("%.64q is not a header name (letters, digits and !#$%%&'*+-.^_`|~)", k)}
		}
		if !node.ValidHeaderValue(val) {
			return nil, &node.FieldError{Field: "headers." + k, Message: "must not hold control characters (such as a line break)"}
		}
		if err := node.CheckTaskHeaderName(k); err != nil {
			return nil, err
		}
		m[k] = val
	}
	return m, nil
}

// expectObject reads the '{' that opens field's value.
func expectObject(dec *json.Decoder, field string) error {
	tok, err := dec.Token()
	if err != nil {
		return badJSON(field)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &node.FieldError{Field: field, Message: fmt.Sprintf("must be a JSON object, not %s", tokenKind(tok))}
	}
	return nil
}

// objectKey reads the next key of an object under field.
func objectKey(dec *json.Decoder, field string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", badJSON(field)
	}
	k, ok := tok.(string)
	if !ok {
		return "", badJSON(field)
	}
	return k, nil
}

func badJSON(field string) error {
	return &node.FieldError{Field: field, Message: "is not valid JSON"}
}

func tooManyParams(limit int) error {
	return &node.FieldError{Field: "params", Message: fmt.Sprintf("has more than %d parameters", limit)}
}

func tokenKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// checkURLLength bounds the task URL. It is reported as "url" whatever the
// format, like node.ValidateRequest's checks of the URL.
func checkURLLength(u string, limit int) error {
	if len(u) > limit {
		return &node.FieldError{Field: "url", Message: fmt.Sprintf("is longer than %d bytes", limit)}
	}
	return nil
}

// taskMethod reads a task's method: one of taskMethods in any case, returned in
// upper case; empty is POST (node.ValidateRequest fills it in).
func taskMethod(field, m string) (string, error) {
	for _, ok := range taskMethods {
		if strings.EqualFold(m, ok) {
			return ok, nil
		}
	}
	if m == "" {
		return "", nil
	}
	return "", &node.FieldError{Field: field, Message: fmt.Sprintf("must be one of %s, not %.40q", strings.Join(taskMethods, ", "), m)}
}

// checkBodyless refuses, for a method whose params go into the query string, a
// JSON task's body and a Content-Type header: such a task has no body.
func checkBodyless(method string, body json.RawMessage, contentType string) error {
	if !node.ParamsInQuery(method) {
		return nil
	}
	if len(body) > 0 && !isNull(body) {
		return &node.FieldError{Field: "body", Message: fmt.Sprintf("a %s task has no body: give params, which are sent in the URL's query string", method)}
	}
	if contentType != "" {
		return &node.FieldError{Field: "headers.Content-Type", Message: fmt.Sprintf("a %s task has no body, so no Content-Type", method)}
	}
	return nil
}

// checkDeliveredURL bounds the URL a GET, HEAD or DELETE task is delivered to:
// its URL with the params as the query string.
func checkDeliveredURL(req node.EnqueueRequest) error {
	if !node.ParamsInQuery(req.Method) || len(req.Body) == 0 {
		return nil
	}
	if n := len(req.URL) + 1 + len(req.Body); n > maxDeliveredURL {
		return &node.FieldError{Field: "params", Message: fmt.Sprintf("a %s task's params go into the URL's query string; URL and params are %d bytes, at most %d", req.Method, n, maxDeliveredURL)}
	}
	return nil
}

func scalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	case nil:
		return "", true
	}
	return "", false
}

// numberText accepts a JSON number or a string holding one ("5").
func numberText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		return 0, fmt.Errorf("must be a number of seconds, not %q", s)
	case f < 0:
		return 0, errors.New("must not be negative")
	case f > 365*24*3600:
		return 0, errors.New("must be at most one year")
	}
	return time.Duration(f * float64(time.Second)), nil
}

func unixSeconds(s string) (time.Time, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, fmt.Errorf("must be a Unix time in seconds, not %q", s)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

func jsonFieldError(err error) error {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			field = "body"
		}
		return &node.FieldError{Field: field, Message: fmt.Sprintf("must be a JSON %s, not %s", jsonKind(ute.Type.Kind().String()), ute.Value)}
	case errors.As(err, &se):
		return &node.FieldError{Field: "body", Message: fmt.Sprintf("is not valid JSON (at byte %d): %v", se.Offset, se)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if f == "" { // a field must be named: report the body
			return &node.FieldError{Field: "body", Message: `has a field named "", which is not a task field (url, method, params, countdown, eta, name, headers, body)`}
		}
		return &node.FieldError{Field: f, Message: "is not a task field (url, method, params, countdown, eta, name, headers, body)"}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &node.FieldError{Field: "body", Message: "is not a complete JSON object"}
	}
	return &node.FieldError{Field: "body", Message: err.Error()}
}

func jsonKind(k string) string {
	switch k {
	case "ptr", "string":
		return "string"
	case "map", "struct":
		return "object"
	}
	return k
}
