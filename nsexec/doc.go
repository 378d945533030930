// Package nsexec is the init stage of a level: the code that runs in the
// re-executed launcher after clone, inside the level's new mount namespace
// and cgroups, and ends in execve of the level's command. It owns both
// ends of the wire between the launcher and the init stage.
//
// Go cannot run code between fork and exec, and unshare(2) changes only the
// calling thread, so the launcher re-executes itself as "cl-unshare [init]"
// and every namespace step here runs on the main thread, locked from
// init(), which is also the thread that calls execve.
package nsexec
