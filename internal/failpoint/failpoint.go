// Package failpoint lets tests make cl-unshare fail on purpose at a named
// step, to prove that every failure leaves nothing behind.
package failpoint

import (
	"fmt"
	"os"
	"syscall"
)

// Env names a step at which cl-unshare fails on purpose. Tests set it
// to prove that a failure at every setup step leaves nothing behind; the
// init stage removes it before exec, so the command never sees it.
const Env = "CL_UNSHARE_FAIL_AT"

// At returns an injected error when Env names step.
func At(step string) error {
	if v := os.Getenv(Env); v != "" && v == step {
		return fmt.Errorf("failure injected by %s=%s: %w", Env, v, syscall.ECANCELED)
	}
	return nil
}
