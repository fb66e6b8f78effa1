package steps

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// waitGroup waits for a started command that leads its own process group
// (Setpgid). When ctx ends first, the group gets SIGTERM, then SIGKILL after
// grace; and once the command has exited, whatever is left of the group is
// killed: nothing a step starts outlives it.
func waitGroup(ctx context.Context, cmd *exec.Cmd, grace time.Duration) error {
	pgid := cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	err := cmd.Wait()
	close(done)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return err
}
