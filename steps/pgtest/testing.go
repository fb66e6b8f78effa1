package pgtest

import (
	"os"
	"strconv"
	"testing"
)

// Start is New for tests: it starts a cluster and stops it when the test
// and its subtests finish (t.Cleanup), logging the tail of the server log
// first if the test failed. Without a usable server installation it skips
// the test, or fails it when $CI is true (see RequireBinaries); any other
// error fails the test.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	RequireBinaries(tb)
	c, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("pgtest: tail of %s:\n%s", c.LogFile, c.LogTail(40))
		}
		if err := c.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// RequireBinaries skips the test when this machine cannot run a PostgreSQL
// server (see Available), giving the reason and what to install. When the
// environment variable CI is true it fails the test instead, so that a
// misconfigured CI machine does not silently skip every database test.
func RequireBinaries(tb testing.TB) {
	tb.Helper()
	err := Available()
	if err == nil {
		return
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		tb.Fatalf("pgtest: %v (CI is set, so this fails instead of skipping)", err)
	}
	tb.Skipf("pgtest: %v", err)
}
