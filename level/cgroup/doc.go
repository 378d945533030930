// Package cgroup finds the cgroup hierarchies a process belongs to, in
// cgroup v2 and every mounted v1 hierarchy, and makes, limits, kills and
// removes a level's cgroups in all of them.
//
// Paths are always derived from /proc/self/cgroup and the mount table
// passed in, never from fixed locations, so the same code works on a
// unified, hybrid or legacy host, inside a level as well as on the host,
// and in unit tests pointed at a temporary directory.
package cgroup
