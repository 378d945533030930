package level

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Event is one JSON line of --json-status-fd (schema in README.md).
type Event struct {
	Event         string           `json:"event"` // "ready" or "exit"
	Name          string           `json:"name"`
	SupervisorPID int              `json:"supervisor_pid,omitempty"`
	CmdPID        int              `json:"cmd_pid,omitempty"`
	Cgroups       map[string]Paths `json:"cgroups,omitempty"`
	Mirror        string           `json:"mirror,omitempty"`
	Namespaces    *Namespaces      `json:"namespaces,omitempty"`
	// exit only
	ExitCode *int   `json:"exit_code,omitempty"` // shell convention: code, or 128+signal
	How      string `json:"how,omitempty"`       // "exited" or "killed"
	Signal   string `json:"signal,omitempty"`    // the signal that killed CMD
	Usage    *Spent `json:"usage,omitempty"`     // what the level used, at CMD's end
	OOMKills int    `json:"oom_kills,omitempty"` // processes of it the kernel OOM-killed
}

func readyEvent(l *Level) Event {
	e := Event{Event: "ready", Name: l.Name, SupervisorPID: os.Getpid(), CmdPID: l.Pid(),
		Cgroups: map[string]Paths{}, Mirror: filepath.Join(l.LevelDir, "cgroup"),
		Namespaces: namespacesOf(l.Pid())}
	e.Cgroups = l.Cgroups()
	return e
}

func exitEvent(name string, ws syscall.WaitStatus) Event {
	code := ExitCode(ws)
	e := Event{Event: "exit", Name: name, ExitCode: &code, How: "exited"}
	if ws.Signaled() {
		e.How, e.Signal = "killed", unix.SignalName(ws.Signal())
	}
	return e
}

// report writes one event line to the status fd, if there is one.
func (l *Level) report(e Event) error {
	if l.statusFD <= 0 {
		return nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := unix.Write(l.statusFD, append(b, '\n')); err != nil {
		return fmt.Errorf("Config.StatusFD %d: %w", l.statusFD, err)
	}
	return nil
}
