// Package level starts and supervises levels: a command in its own
// cgroups (every hierarchy), cgroup namespace and mount namespace, with a
// fresh /sys/fs/cgroup mirrored to the host under RUN/levels/NAME/cgroup.
//
// It is the one place that knows how to start a level; the code that runs
// inside the new namespaces is package nsexec.
package level
