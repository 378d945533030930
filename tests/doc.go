// Package tests holds cl-unshare's integration tests: they build the
// binary once, start real levels as root, and check each guarantee with the
// kernel's own evidence (/proc/PID/cgroup, namespace links, mountinfo, the
// cgroup tree before and after).
//
// Tests that need root or a kernel feature skip with the reason; with
// CL_UNSHARE_NO_SKIP=1 (set by CI) every such skip is a failure instead.
package tests
