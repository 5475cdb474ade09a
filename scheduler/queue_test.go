package scheduler

import (
	"slices"
	"testing"
	"time"
)

func TestPlanBackfill(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return now.Add(d) }
	tests := []struct {
		name    string
		free    int
		running []holding
		pending []queued
		want    []string
	}{
		{"fits in order", 2, nil, []queued{{"a", 1, 0}, {"b", 1, 0}, {"c", 1, 0}}, []string{"a", "b"}},
		{"zero-GPU jobs always start", 0, []holding{{2, time.Time{}}}, []queued{{"big", 2, 0}, {"cpu", 0, 0}}, []string{"cpu"}},
		{"short job backfills before the shadow time", 1, []holding{{1, at(time.Hour)}},
			[]queued{{"big", 2, 0}, {"short", 1, 10 * time.Minute}}, []string{"short"}},
		{"long job would delay the big one", 1, []holding{{1, at(time.Hour)}},
			[]queued{{"big", 2, 0}, {"long", 1, 2 * time.Hour}}, nil},
		{"unbounded job would delay the big one", 1, []holding{{1, at(time.Hour)}},
			[]queued{{"big", 2, 0}, {"free-running", 1, 0}}, nil},
		{"running job without a limit: any bounded job backfills", 1, []holding{{1, time.Time{}}},
			[]queued{{"big", 2, 0}, {"long", 1, 100 * time.Hour}, {"unbounded", 1, 0}}, []string{"long"}},
		{"extra GPUs may be used by an unbounded job", 2, []holding{{2, at(time.Hour)}},
			[]queued{{"big", 3, 0}, {"side", 1, 0}, {"side2", 1, 0}}, []string{"side"}},
		{"priority order is kept before blocking", 3, nil,
			[]queued{{"p1", 2, 0}, {"p2", 2, 0}, {"p3", 1, 0}}, []string{"p1", "p3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := plan(now, tc.free, tc.pending, tc.running); !slices.Equal(got, tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
		})
	}
}
