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
// original README's own example sends "applicatoin/json".
func parseTask(contentType string, body []byte) (node.EnqueueRequest, error) {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		return parseJSON(trimmed)
	case strings.Contains(ct, "json"):
		return parseJSON(trimmed)
	case strings.HasPrefix(ct, "multipart/"):
		return node.EnqueueRequest{}, &node.FieldError{Field: "Content-Type", Message: "multipart bodies are not supported: send a form (application/x-www-form-urlencoded) or a JSON object"}
	}
	return parseForm(body)
}

func parseForm(body []byte) (node.EnqueueRequest, error) {
	var req node.EnqueueRequest
	var rest []string
	seen := map[string]bool{}
	for _, pair := range strings.Split(string(body), "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return req, &node.FieldError{Field: k, Message: "is not valid form encoding"}
		}
		if !strings.HasPrefix(key, "task.") {
			rest = append(rest, pair)
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
			req.URL = val
		case "task.method":
			req.Method = val
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
	req.Body = []byte(strings.Join(rest, "&"))
	req.ContentType = "application/x-www-form-urlencoded"
	return req, nil
}

// jsonTask is the JSON form of a task.
type jsonTask struct {
	URL       *string           `json:"url"`
	Method    string            `json:"method"`
	Params    map[string]any    `json:"params"`
	Countdown json.RawMessage   `json:"countdown"`
	ETA       json.RawMessage   `json:"eta"`
	Name      string            `json:"name"`
	Headers   map[string]string `json:"headers"`
	Body      json.RawMessage   `json:"body"`
}

func parseJSON(b []byte) (node.EnqueueRequest, error) {
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
	req.URL, req.Method, req.Name = *jt.URL, jt.Method, jt.Name
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
	names := make([]string, 0, len(jt.Headers))
	for k := range jt.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if strings.EqualFold(k, "Content-Type") {
			req.ContentType = jt.Headers[k]
			continue
		}
		req.Headers = append(req.Headers, node.Header{Name: k, Value: jt.Headers[k]})
	}
	switch {
	case len(jt.Body) > 0 && jt.Params != nil:
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
	case jt.Params != nil:
		form, err := encodeParams(jt.Params)
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

// encodeParams form-encodes params with keys sorted (JSON objects have no order).
// Values may be strings, numbers, booleans or arrays of those.
func encodeParams(params map[string]any) (string, error) {
	v := url.Values{}
	for k, val := range params {
		switch x := val.(type) {
		case []any:
			for _, e := range x {
				s, ok := scalar(e)
				if !ok {
					return "", &node.FieldError{Field: "params." + k, Message: "must be a string, number, boolean or an array of those"}
				}
				v.Add(k, s)
			}
		default:
			s, ok := scalar(val)
			if !ok {
				return "", &node.FieldError{Field: "params." + k, Message: "must be a string, number, boolean or an array of those"}
			}
			v.Add(k, s)
		}
	}
	return v.Encode(), nil
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
