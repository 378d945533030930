// Package mounts holds what cl-unshare knows about mounts: reading
// mountinfo (through github.com/moby/sys/mountinfo), describing the host's
// cgroup filesystem layout so a level can rebuild it, and the mount
// syscalls the init stage and the launcher use (propagation, cgroupfs
// mounts, bind and move, teardown).
//
// Pure parsing lives in files without a _linux suffix so unit tests can feed
// captured mountinfo text without root.
package mounts
