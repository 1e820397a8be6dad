package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// A queue's settings in JSON use App Engine's queue.yaml names. A PUT names the
// settings it changes; null unsets one (it returns to its default); the others stay
// as they are. GET shows, under "settings", only what a client set, and under
// "effective" every setting as the queue runs, with null for a limit that is off.

// settingSpec is one setting a PUT may name: its field bit and how its JSON value
// is read into a QueueConfig.
type settingSpec struct {
	field node.SettingFields
	read  func(raw json.RawMessage, c *node.QueueConfig) error
}

var topSettings = map[string]settingSpec{
	"rate":              {node.FieldRate, readRate},
	"bucket_size":       {node.FieldBucketSize, readInt(func(c *node.QueueConfig) *int { return &c.BucketSize })},
	"max_concurrent":    {node.FieldMaxConcurrent, readInt(func(c *node.QueueConfig) *int { return &c.MaxConcurrent })},
	"dispatch_deadline": {node.FieldDispatchDeadline, readDuration(func(c *node.QueueConfig) *time.Duration { return &c.DispatchDeadline })},
	"delivery":          {node.FieldDelivery, readDelivery},
}

var retrySettings = map[string]settingSpec{
	"task_retry_limit": {node.FieldTaskRetryLimit, readInt(func(c *node.QueueConfig) *int { return &c.Retry.TaskRetryLimit })},
	"task_age_limit":   {node.FieldTaskAgeLimit, readDuration(func(c *node.QueueConfig) *time.Duration { return &c.Retry.TaskAgeLimit })},
	"min_backoff":      {node.FieldMinBackoff, readDuration(func(c *node.QueueConfig) *time.Duration { return &c.Retry.MinBackoff })},
	"max_backoff":      {node.FieldMaxBackoff, readDuration(func(c *node.QueueConfig) *time.Duration { return &c.Retry.MaxBackoff })},
	"max_doublings":    {node.FieldMaxDoublings, readInt(func(c *node.QueueConfig) *int { return &c.Retry.MaxDoublings })},
}

// The lists a bad name is answered with.
const (
	validSettings      = "rate, bucket_size, max_concurrent, retry, dispatch_deadline, delivery, paused"
	validRetrySettings = "task_retry_limit, task_age_limit, min_backoff, max_backoff, max_doublings"
)

// settingsPatch is a PUT's body: the settings it names with their new values (in
// cfg), those it unsets, and the pause when it names one.
type settingsPatch struct {
	set, unset node.SettingFields
	cfg        node.QueueConfig
	paused     *bool
}

// parseSettings reads a PUT /v1/queues/{queue} body (empty: no change). Every
// error is a *node.FieldError naming the setting ("retry.min_backoff").
func parseSettings(body []byte) (settingsPatch, error) {
	var p settingsPatch
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	top, err := settingsObject(body, "body", "must be a JSON object of queue settings ("+validSettings+")")
	if err != nil {
		return p, err
	}
	for _, name := range sortedNames(top) {
		raw := top[name]
		switch spec, known := topSettings[name]; {
		case known:
			err = p.read(name, spec, raw)
		case name == "paused":
			err = p.readPaused(raw)
		case name == "retry":
			err = p.readRetry(raw)
		default:
			err = &node.FieldError{Field: name, Message: "is not a queue setting; the settings are " + validSettings}
		}
		if err != nil {
			return p, err
		}
	}
	return p, nil
}

// read reads one setting, or notes that null unsets it.
func (p *settingsPatch) read(name string, spec settingSpec, raw json.RawMessage) error {
	if isNull(raw) {
		p.unset |= spec.field
		return nil
	}
	if err := spec.read(raw, &p.cfg); err != nil {
		return &node.FieldError{Field: name, Message: err.Error()}
	}
	p.set |= spec.field
	return nil
}

func (p *settingsPatch) readPaused(raw json.RawMessage) error {
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return &node.FieldError{Field: "paused", Message: "must be true or false, not " + excerpt(raw)}
	}
	p.paused = &b
	return nil
}

// readRetry reads the retry object; null unsets every retry setting.
func (p *settingsPatch) readRetry(raw json.RawMessage) error {
	if isNull(raw) {
		for _, spec := range retrySettings {
			p.unset |= spec.field
		}
		return nil
	}
	obj, err := settingsObject(raw, "retry", "must be a JSON object ("+validRetrySettings+")")
	if err != nil {
		return err
	}
	for _, name := range sortedNames(obj) {
		spec, known := retrySettings[name]
		if !known {
			return &node.FieldError{Field: "retry." + name, Message: "is not a retry setting; they are " + validRetrySettings}
		}
		if err := p.read("retry."+name, spec, obj[name]); err != nil {
			return err
		}
	}
	return nil
}

// apply overlays the patch on the setting held now: the fields it sets take its
// values, those it unsets the defaults. A rate set without a bucket_size gets a
// bucket of 1, as App Engine's does. It returns the whole new configuration, the
// fields a client has set, and the pause.
func (p settingsPatch) apply(cur node.QueueSetting, defaults node.QueueConfig) (node.QueueConfig, node.SettingFields, bool, error) {
	cfg := cur.Config.With(defaults, p.unset).With(p.cfg, p.set)
	explicit := cur.Explicit&^p.unset | p.set
	paused := cur.Paused
	if p.paused != nil {
		paused = *p.paused
	}
	if explicit&node.FieldBucketSize == 0 {
		cfg.BucketSize = defaults.BucketSize
		if cfg.Rate > 0 && cfg.BucketSize == 0 {
			cfg.BucketSize = 1
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, explicit, paused, firstFieldError(err)
	}
	return cfg, explicit, paused, nil
}

// firstFieldError returns the first *node.FieldError inside err (a joined list),
// or one naming "settings".
func firstFieldError(err error) error {
	if fe := fieldErrors(err); len(fe) > 0 {
		return fe[0]
	}
	return &node.FieldError{Field: "settings", Message: err.Error()}
}

func fieldErrors(err error) []*node.FieldError {
	if fe, ok := err.(*node.FieldError); ok {
		return []*node.FieldError{fe}
	}
	var out []*node.FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(e)...)
		}
	}
	return out
}

// settingsObject decodes one JSON object of settings, its values left raw; field
// and what say what is wrong when b is not an object.
func settingsObject(b []byte, field, what string) (map[string]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, &node.FieldError{Field: field, Message: what}
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, jsonFieldError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &node.FieldError{Field: field, Message: "has data after the JSON object"}
	}
	return m, nil
}

func sortedNames(m map[string]json.RawMessage) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// excerpt shows a JSON value in an error message, cut short.
func excerpt(raw json.RawMessage) string {
	s := string(bytes.TrimSpace(raw))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// rateUnits are the units of App Engine's rate strings ("5/s"), in seconds.
var rateUnits = map[string]float64{"s": 1, "m": 60, "h": 3600, "d": 86400}

const rateForms = `a number of tasks per second (5, 0.5) or a rate such as "5/s", "100/m", "1/h" or "1/d"`

// readRate reads a rate: a JSON number (per second) or App Engine's "N/unit".
func readRate(raw json.RawMessage, c *node.QueueConfig) error {
	var f float64
	if err := json.Unmarshal(raw, &f); err == nil {
		c.Rate = f
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("must be %s, not %s", rateForms, excerpt(raw))
	}
	r, ok := parseRate(s)
	if !ok {
		return fmt.Errorf("must be %s, not %q", rateForms, s)
	}
	c.Rate = r
	return nil
}

// parseRate reads "N", "N/s", "N/m", "N/h" or "N/d" as tasks per second.
func parseRate(s string) (float64, bool) {
	num, unit, hasUnit := strings.Cut(strings.TrimSpace(s), "/")
	per := 1.0
	if hasUnit {
		var ok bool
		if per, ok = rateUnits[strings.TrimSpace(unit)]; !ok {
			return 0, false
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, false
	}
	return n / per, true
}

// readInt returns a reader of a whole JSON number into the field at.
func readInt(at func(*node.QueueConfig) *int) func(json.RawMessage, *node.QueueConfig) error {
	return func(raw json.RawMessage, c *node.QueueConfig) error {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil || f != math.Trunc(f) || math.Abs(f) > 1e9 {
			return fmt.Errorf("must be a whole number, not %s", excerpt(raw))
		}
		*at(c) = int(f)
		return nil
	}
}

const durationForms = `a duration such as "1.5s", "10m" or "2d" (or a number of seconds)`

// readDuration returns a reader of a duration into the field at: a Go duration
// string, App Engine's days ("2d"), or a JSON number of seconds.
func readDuration(at func(*node.QueueConfig) *time.Duration) func(json.RawMessage, *node.QueueConfig) error {
	return func(raw json.RawMessage, c *node.QueueConfig) error {
		var f float64
		if err := json.Unmarshal(raw, &f); err == nil {
			if math.Abs(f) > 100*365*86400 {
				return fmt.Errorf("must be at most 100 years, not %s seconds", excerpt(raw))
			}
			*at(c) = time.Duration(f * float64(time.Second))
			return nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("must be %s, not %s", durationForms, excerpt(raw))
		}
		d, ok := parseDuration(s)
		if !ok {
			return fmt.Errorf("must be %s, not %q", durationForms, s)
		}
		*at(c) = d
		return nil
	}
}

// parseDuration reads a Go duration ("1m30s") or a whole number of days ("2d").
func parseDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, false
		}
		return time.Duration(n) * 24 * time.Hour, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

func readDelivery(raw json.RawMessage, c *node.QueueConfig) error {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("must be \"at-least-once\" or \"at-most-once\", not %s", excerpt(raw))
	}
	d, err := node.ParseDeliveryMode(s)
	if err != nil {
		return fmt.Errorf("must be \"at-least-once\" or \"at-most-once\", not %q", s)
	}
	c.Delivery = d
	return nil
}

// ViewOf renders a queue's setting for GET /v1/queues and /v1/queues/{queue}.
func ViewOf(s node.QueueSetting) QueueView {
	return QueueView{Name: s.Queue, Settings: ExplicitView(s.Config, s.Explicit), Effective: EffectiveView(s.Config),
		Paused: s.Paused && !s.Deleted, Version: s.Version}
}

// ExplicitView renders the settings a client set, as a PUT names them; the
// others are absent.
func ExplicitView(c node.QueueConfig, set node.SettingFields) map[string]any {
	all := settingValues(c)
	out := map[string]any{}
	retry := map[string]any{}
	for name, spec := range topSettings {
		if set&spec.field != 0 {
			out[name] = all[name]
		}
	}
	for name, spec := range retrySettings {
		if set&spec.field != 0 {
			retry[name] = all["retry"].(map[string]any)[name]
		}
	}
	if len(retry) > 0 {
		out["retry"] = retry
	}
	return out
}

// EffectiveView renders every setting as the queue runs: a limit that is off
// (no rate, no concurrency cap, no retry or age limit) is null.
func EffectiveView(c node.QueueConfig) map[string]any {
	v := settingValues(c)
	retry := v["retry"].(map[string]any)
	nullIf := func(m map[string]any, name string, off bool) {
		if off {
			m[name] = nil
		}
	}
	nullIf(v, "rate", c.Rate == 0)
	nullIf(v, "bucket_size", c.Rate == 0)
	nullIf(v, "max_concurrent", c.MaxConcurrent == 0)
	nullIf(retry, "task_retry_limit", c.Retry.TaskRetryLimit == 0)
	nullIf(retry, "task_age_limit", c.Retry.TaskAgeLimit == 0)
	return v
}

// settingValues renders every setting's value.
func settingValues(c node.QueueConfig) map[string]any {
	return map[string]any{
		"rate":           c.Rate,
		"bucket_size":    c.BucketSize,
		"max_concurrent": c.MaxConcurrent,
		"retry": map[string]any{
			"task_retry_limit": c.Retry.TaskRetryLimit,
			"task_age_limit":   c.Retry.TaskAgeLimit.String(),
			"min_backoff":      c.Retry.MinBackoff.String(),
			"max_backoff":      c.Retry.MaxBackoff.String(),
			"max_doublings":    c.Retry.MaxDoublings,
		},
		"dispatch_deadline": c.DispatchDeadline.String(),
		"delivery":          c.Delivery.String(),
	}
}
