package level

import (
	"context"
	"errors"
)

// StartContext is Start with a context: cancelling it kills the level
// (every process, through its cgroups); Wait then reports the kill.
func StartContext(ctx context.Context, cfg Config) (*Level, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, err := Start(cfg)
	if err != nil {
		return nil, err
	}
	l.done = make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			_ = l.Kill()
		case <-l.done:
		}
	}()
	return l, nil
}

// Kill kills every process of the level, nested levels included, and
// waits until they are gone. The command's Wait then returns.
func (l *Level) Kill() error {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return errors.New("level " + l.Name + " is closed")
	}
	return l.cgroups.Kill()
}

// Freeze freezes the level (nested levels included) and waits until the
// kernel reports it frozen.
func (l *Level) Freeze() error { return l.cgroups.Freeze(true) }

// Thaw thaws the level and waits until it runs again.
func (l *Level) Thaw() error { return l.cgroups.Freeze(false) }

// Cgroups lists the level's outer and inner cgroup directories, keyed by
// hierarchy name ("cgroup2", "memory", "name=systemd").
func (l *Level) Cgroups() map[string]Paths {
	m := map[string]Paths{}
	for _, d := range l.cgroups.Dirs {
		m[d.Name()] = Paths{Outer: d.Outer, Inner: d.Inner, Leaf: d.Leaf}
	}
	return m
}
