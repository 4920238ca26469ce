package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/store"
	"repeaterd/tasks"
)

func newPurgeCmd() *cobra.Command {
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete terminal records older than a retention window, with their attempts and orphaned payloads",
		Long: `Delete terminal records (success, cancelled, empty, payload_rejected) registered
longer ago than --older-than, their attempts and the payloads no record uses any
more, in small batches. Ready records are never purged. The scheduler role runs
this hourly with REPEATERD_RETENTION.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan <= 0 {
				return fmt.Errorf("--older-than must be positive")
			}
			return withStore(cmd, func(st *store.Store) error {
				res, err := tasks.Purge(cmd.Context(), st, olderThan)
				fmt.Fprintf(cmd.OutOrStdout(), "purged %d records and %d payloads\n", res.Records, res.Payloads)
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&olderThan, "older-than", tasks.DefaultRetention, "retention window")
	return cmd
}
