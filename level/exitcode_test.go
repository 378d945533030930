package level

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cl-unshare/cl-unshare/nsexec"
	"golang.org/x/sys/unix"
)

func TestErrorCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{&nsexec.StepError{Step: nsexec.StepExec, Errno: unix.ENOENT, Text: "nope: not found"}, 127},
		{fmt.Errorf("start: %w", &nsexec.StepError{Step: nsexec.StepExec, Errno: unix.ENOENT}), 127},
		{&nsexec.StepError{Step: nsexec.StepExec, Errno: unix.EACCES}, 126},
		{&nsexec.StepError{Step: nsexec.StepExec, Errno: unix.ENOEXEC}, 126},
		{&nsexec.StepError{Step: nsexec.StepExec}, 126},
		{&nsexec.StepError{Step: nsexec.StepCgroupNS, Errno: unix.ENOENT}, 125},
		{&nsexec.StepError{Step: nsexec.StepCgroupMount, Errno: unix.EACCES}, 125},
		{&nsexec.StepError{Step: nsexec.StepConfig}, 125},
		{&nsexec.StepError{Step: "before exec", Errno: unix.ECANCELED}, 125},
		{errors.New("plain"), 125},
		{fmt.Errorf("wrapped: %w", unix.ENOENT), 125},
		{&FieldError{Field: "Limits.Memory", Err: errors.New("x")}, 125},
		{nsexec.ErrDied, 125},
	} {
		if got := ErrorCode(c.err); got != c.code {
			t.Errorf("ErrorCode(%v) = %d, want %d", c.err, got, c.code)
		}
	}
}
