package node

import (
	"regexp"
	"strings"
	"testing"
)

// queueNameSpec is the rule ValidQueueName checks by hand.
var queueNameSpec = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$`)

func TestValidQueueNameMatchesItsRule(t *testing.T) {
	names := []string{"", "a", "Z9", "emails", "a.b-c_d", "_x", ".x", "-x", "x y", "x/y", "é", "x\n",
		strings.Repeat("q", 100), strings.Repeat("q", 101), "v1", "a%20b", "0", "a..", "UPPER.case-9_"}
	for c := 0; c < 256; c++ {
		names = append(names, string(rune(c)), "a"+string([]byte{byte(c)}), string([]byte{byte(c)})+"a")
	}
	for _, n := range names {
		if got, want := ValidQueueName(n), queueNameSpec.MatchString(n); got != want {
			t.Errorf("ValidQueueName(%q) = %v, the rule says %v", n, got, want)
		}
	}
}

func FuzzValidQueueName(f *testing.F) {
	f.Add("emails")
	f.Add("_x")
	f.Fuzz(func(t *testing.T, n string) {
		if got, want := ValidQueueName(n), queueNameSpec.MatchString(n); got != want {
			t.Errorf("ValidQueueName(%q) = %v, the rule says %v", n, got, want)
		}
	})
}
