// Command cutover is a declarative runbook engine for database cutovers:
// it validates versioned YAML plans (expression types included), runs their
// steps in order with guards, retries and asserts, journals every step in a
// tamper-evident log, and on failure runs the compensating steps in reverse.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, signals()))
}

// signals delivers SIGINT and SIGTERM.
func signals() <-chan os.Signal {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	return ch
}
