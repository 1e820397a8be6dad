package sim

import (
	"slices"

	"github.com/miyamotohq/miyamoto/node"
)

// UnsafeSwitch is one deliberate protocol slip a negative-control scenario may switch
// on (cluster.unsafe): a field of node.Unsafe, and the invariant it breaks.
type UnsafeSwitch struct {
	Invariant string
	set       func(*node.Unsafe)
}

// UnsafeSwitches names every field of node.Unsafe for scenario files. A scenario may
// list them in cluster.unsafe only when it expects a violation (Validate).
var UnsafeSwitches = map[string]UnsafeSwitch{
	"skip_recount":               {"S6", func(u *node.Unsafe) { u.SkipRecount = true }},
	"admit_past_limits":          {"S7", func(u *node.Unsafe) { u.AdmitPastLimits = true }},
	"ack_repeated_store_early":   {"S8", func(u *node.Unsafe) { u.AckRepeatedStoreEarly = true }},
	"drop_stored_tasks":          {"L2", func(u *node.Unsafe) { u.DropStoredTasks = true }},
	"burst_off_by_one":           {"Q1", func(u *node.Unsafe) { u.BurstOffByOne = true }},
	"concurrency_off_by_one":     {"Q2", func(u *node.Unsafe) { u.ConcurrencyOffByOne = true }},
	"forget_at_once":             {"Q3", func(u *node.Unsafe) { u.ForgetAtOnce = true }},
	"retry_without_backoff":      {"Q4", func(u *node.Unsafe) { u.RetryWithoutBackoff = true }},
	"ignore_pause":               {"Q5", func(u *node.Unsafe) { u.IgnorePause = true }},
	"settings_not_logged":        {"Q6", func(u *node.Unsafe) { u.SettingsNotLogged = true }},
	"keep_unknown":               {"L3", func(u *node.Unsafe) { u.KeepUnknown = true }},
	"tick_task_per_node":         {"SC1", func(u *node.Unsafe) { u.TickTaskPerNode = true }},
	"tick_primary_only":          {"SC2", func(u *node.Unsafe) { u.TickPrimaryOnly = true }},
	"lease_without_drift":        {"M1", func(u *node.Unsafe) { u.LeaseWithoutDrift = true }},
	"move_skip_old_majority":     {"M2", func(u *node.Unsafe) { u.MoveSkipOldMajority = true }},
	"token_without_lease":        {"Q2", func(u *node.Unsafe) { u.TokenWithoutLease = true }},
	"tick_without_lease":         {"S1", func(u *node.Unsafe) { u.TickWithoutLease = true }},
	"claimed_answered_succeeded": {"V1", func(u *node.Unsafe) { u.ClaimedAnsweredSucceeded = true }},
}

// UnsafeNames lists the switches' names, sorted.
func UnsafeNames() []string {
	names := make([]string, 0, len(UnsafeSwitches))
	for k := range UnsafeSwitches {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// unsafeConfig turns validated switch names into node settings.
func unsafeConfig(names []string) node.Unsafe {
	var u node.Unsafe
	for _, nm := range names {
		UnsafeSwitches[nm].set(&u)
	}
	return u
}
