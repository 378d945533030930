package level

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A claim is the whole record or nothing: the name taken once, by a file
// that already holds the record, so a start killed at any moment never
// leaves an empty record that gc cannot read.
func TestClaimStateWhole(t *testing.T) {
	run := t.TempDir()
	s := &State{Name: "a", Argv: []string{"sleep", "1"}}
	if err := claimState(run, s); err != nil {
		t.Fatal(err)
	}
	got, err := readState(run, "a")
	if err != nil || got.Name != "a" || strings.Join(got.Argv, " ") != "sleep 1" {
		t.Fatalf("record after the claim: %+v, %v", got, err)
	}
	if err := claimState(run, &State{Name: "a"}); !errors.Is(err, os.ErrExist) {
		t.Errorf("second claim of the name: %v, want it taken", err)
	}
	ents, _ := os.ReadDir(stateDir(run))
	if len(ents) != 1 {
		t.Errorf("state directory holds %d entries, want the one record", len(ents))
	}
}

// gc removes what a supervisor killed mid-write left (NAME.json.tmp) once
// its level has no live supervisor, and nothing else.
func TestRemovePartial(t *testing.T) {
	run := t.TempDir()
	if err := claimState(run, &State{Name: "live", Supervisor: Proc{PID: os.Getpid(), Start: selfStart(t)}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"gone.json.tmp", "live.json.tmp"} {
		if err := os.WriteFile(filepath.Join(stateDir(run), n), []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var done []string
	removePartial(run, &done)
	if len(done) != 1 || !strings.Contains(done[0], "gone.json.tmp") {
		t.Errorf("removed %q, want only gone.json.tmp", done)
	}
	if _, err := os.Stat(filepath.Join(stateDir(run), "live.json.tmp")); err != nil {
		t.Errorf("the live level's partial record went: %v", err)
	}
}

func selfStart(t *testing.T) uint64 {
	st, _, err := procStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	return st
}
