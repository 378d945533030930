// Package nsexec is the init stage of a level, and only that: the code a
// re-executed cl-unshare runs inside the new namespaces, which ends in the
// command's execve (or, as PID 1, in waiting for it). Each Mode has a
// file of its own: level_linux.go makes a new level's namespaces and
// mounts, inplace_linux.go does the same for --exec, join_linux.go enters
// a running level for `cl-unshare exec`. wire.go is the protocol with the
// launcher (package level), which does everything outside the level.
package nsexec
