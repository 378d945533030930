// Package pty gives a command a terminal of its own, relayed to the
// caller's, so that code the caller does not trust never holds the
// caller's terminal: when the relay ends, whatever the command left
// behind holds only a dead pty (sudo's use_pty, su --pty).
package pty

import (
	"errors"
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Relay copies between the caller's terminal and a new pty.
type Relay struct {
	tty    *os.File // the caller's terminal
	master *os.File
	Slave  *os.File // for the command; close it once the command has it
	saved  *unix.Termios
	wake   [2]int
	wg     sync.WaitGroup
	once   sync.Once
	sigs   chan os.Signal
}

// Open makes a pty shaped like tty (its settings and size).
func Open(tty *os.File) (*Relay, error) {
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	r := &Relay{tty: tty, master: os.NewFile(uintptr(m), "ptmx"), wake: [2]int{-1, -1}}
	fail := func(err error) (*Relay, error) { r.master.Close(); return nil, err }
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return fail(err)
	}
	// The peer by descriptor (Linux 4.13), not by a path under /dev/pts.
	s, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return fail(errno)
	}
	r.Slave = os.NewFile(s, "pts")
	if t, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err == nil {
		r.saved = t
		_ = unix.IoctlSetTermios(int(s), unix.TCSETS, t)
	}
	r.resize()
	if err := unix.Pipe2(r.wake[:], unix.O_CLOEXEC); err != nil {
		r.Slave.Close()
		return fail(err)
	}
	return r, nil
}

// Start puts the caller's terminal in raw mode (the pty does the line
// discipline now) and relays both ways until Close.
func (r *Relay) Start() {
	if r.saved != nil {
		raw := *r.saved
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		_ = unix.IoctlSetTermios(int(r.tty.Fd()), unix.TCSETS, &raw)
	}
	r.sigs = make(chan os.Signal, 1)
	signal.Notify(r.sigs, unix.SIGWINCH)
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.copy(int(r.tty.Fd()), int(r.master.Fd())) }()
	go func() { defer r.wg.Done(); r.copy(int(r.master.Fd()), int(r.tty.Fd())) }()
	go func() {
		for range r.sigs {
			r.resize()
		}
	}()
}

// copy moves bytes from one descriptor to another until either fails or
// Close wakes it; it never holds a read of the caller's terminal past
// Close, so no keystroke of the caller's is lost.
func (r *Relay) copy(from, to int) {
	buf := make([]byte, 32<<10)
	for {
		fds := []unix.PollFd{{Fd: int32(from), Events: unix.POLLIN}, {Fd: int32(r.wake[0]), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		n, err := unix.Read(from, buf)
		if n <= 0 || err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return
		}
		for b := buf[:n]; len(b) > 0; {
			w, err := unix.Write(to, b)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return
			}
			b = b[max(w, 0):]
		}
	}
}

func (r *Relay) resize() {
	if ws, err := unix.IoctlGetWinsize(int(r.tty.Fd()), unix.TIOCGWINSZ); err == nil {
		_ = unix.IoctlSetWinsize(int(r.master.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// Close ends the relay once the command is done: what is still queued
// for the caller's terminal goes out, then the pty is closed, so what the
// command left behind gets a hang-up, and the caller's terminal is as
// it was.
func (r *Relay) Close() {
	r.once.Do(func() {
		// Drain the output the command wrote before it ended.
		buf := make([]byte, 32<<10)
		for {
			fds := []unix.PollFd{{Fd: int32(r.master.Fd()), Events: unix.POLLIN}}
			if n, _ := unix.Poll(fds, 20); n <= 0 || fds[0].Revents&unix.POLLIN == 0 {
				break
			}
			n, err := unix.Read(int(r.master.Fd()), buf)
			if n <= 0 || err != nil {
				break
			}
			_, _ = unix.Write(int(r.tty.Fd()), buf[:n])
		}
		unix.Close(r.wake[1]) // wakes both copies
		r.wg.Wait()
		if r.sigs != nil {
			signal.Stop(r.sigs)
			close(r.sigs)
		}
		r.master.Close()
		r.Slave.Close()
		unix.Close(r.wake[0])
		if r.saved != nil {
			_ = unix.IoctlSetTermios(int(r.tty.Fd()), unix.TCSETS, r.saved)
		}
	})
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
