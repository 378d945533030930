package nsexec

import (
	"fmt"
	"os"
	"syscall"
)

// FailEnv names a step at which cl-unshare fails on purpose. Tests set it
// to prove that a failure at every setup step leaves nothing behind; the
// init stage removes it before exec, so the command never sees it.
const FailEnv = "CL_UNSHARE_FAIL_AT"

// FailPoint returns an injected error when FailEnv names step.
func FailPoint(step string) error {
	if v := os.Getenv(FailEnv); v != "" && v == step {
		return fmt.Errorf("failure injected by %s=%s: %w", FailEnv, v, syscall.ECANCELED)
	}
	return nil
}
