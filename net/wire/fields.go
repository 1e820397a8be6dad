package wire

import (
	"time"

	"github.com/miyamotohq/miyamoto/node"
)

// The field encodings of this package, for other formats built on them (net/disk's
// records): strings are a uvarint length and the bytes, numbers varints, times
// tagged (zero, Unix nanoseconds, or seconds and nanoseconds outside 1678–2262).

// AppendString appends s as a uvarint length and its bytes.
func AppendString(b []byte, s string) []byte { return appendString(b, s) }

// AppendTime appends t; it decodes to the same instant in UTC (the zero time stays zero).
func AppendTime(b []byte, t time.Time) []byte { return appendTime(b, t) }

// AppendSetting appends a queue setting as QueueSet messages carry it.
func AppendSetting(b []byte, s *node.QueueSetting) []byte { return appendSetting(b, s) }

// AppendSchedule appends a schedule as ScheduleSet messages carry it.
func AppendSchedule(b []byte, s *node.Schedule) []byte { return appendSchedule(b, s) }

// AppendRoster appends a roster as Roster messages carry it.
func AppendRoster(b []byte, r *node.Roster) []byte { return appendRoster(b, r) }

// Fields reads fields written with this package's encodings. After the first error
// every read returns a zero value and Err reports that error (wrapping ErrMalformed).
// `what` names the field in the error.
type Fields struct{ d decoder }

// NewFields reads from b; decoded values never point into b.
func NewFields(b []byte) *Fields { return &Fields{d: decoder{b: b}} }

func (f *Fields) Byte(what string) byte      { return f.d.byte1(what) }
func (f *Fields) Uvarint(what string) uint64 { return f.d.uvarint(what) }
func (f *Fields) Int(what string) int        { return f.d.int(what) }
func (f *Fields) String(what string) string  { return f.d.string(what) }
func (f *Fields) Time(what string) time.Time { return f.d.time(what) }
func (f *Fields) Task() *node.Task           { return f.d.task() }

// Setting reads a queue setting written by AppendSetting (nil after an error).
func (f *Fields) Setting() *node.QueueSetting { return f.d.setting() }

// SettingFormat2 reads a queue setting as wire Version 2's AppendSetting wrote it
// (net/disk's records before format 4): its Explicit fields are those that differ
// from the defaults, and it is not Deleted.
func (f *Fields) SettingFormat2() *node.QueueSetting { return f.d.settingFormat2() }

func (f *Fields) Fail(format string, a ...any) { f.d.fail(format, a...) }

// Schedule reads a schedule written by AppendSchedule (nil after an error).
func (f *Fields) Schedule() *node.Schedule { return f.d.schedule() }

// Roster reads a roster written by AppendRoster (nil after an error).
func (f *Fields) Roster() *node.Roster { return f.d.roster() }

// RosterFormat6 reads a roster as wire Version 6's AppendRoster wrote it (net/disk's
// records before format 6): it has no Removed members.
func (f *Fields) RosterFormat6() *node.Roster { return f.d.rosterFormat6() }

// Len is how many bytes are left; Err the first error.
func (f *Fields) Len() int   { return len(f.d.b) }
func (f *Fields) Err() error { return f.d.err }
