// Command repeaterd forwards repeat records from a multi-tenant application
// to its users' HTTP endpoints. See `repeaterd --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "repeaterd:", err)
		os.Exit(1)
	}
}
