package api

import "testing"

// The enqueue answer is the original's, byte for byte.
func TestScheduledAnswer(t *testing.T) {
	for id, want := range map[string]string{
		"0f8fad5b-d9cb-469f-a165-70867728950e": `{"status": "scheduled", "id": "0f8fad5b-d9cb-469f-a165-70867728950e"}` + "\n",
		`we"ird`:                               `{"status": "scheduled", "id": "we\"ird"}` + "\n",
	} {
		if got := string(scheduledAnswer(id)); got != want {
			t.Errorf("scheduledAnswer(%q) = %q, want %q", id, got, want)
		}
	}
}
