package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/store"
	"repeaterd/tasks"
)

func newPurgeCmd() *cobra.Command {
	var (
		olderThan time.Duration
		dryRun    bool
	)
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete terminal records completed longer ago than a retention window, with their attempts and orphaned payloads",
		Long: `Delete terminal records (success, cancelled, empty, payload_rejected) that
completed longer ago than --older-than, their attempts and the payloads no record
uses any more, in small batches, printing the running totals. Ready records are
never purged. --dry-run counts what would go and deletes nothing. The scheduler
role runs this hourly with REPEATERD_RETENTION (its counts go to the log and to
repeaterd_purged_total).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if olderThan <= 0 {
				return fmt.Errorf("--older-than must be positive")
			}
			out := cmd.OutOrStdout()
			return withStore(cmd, func(st *store.Store) error {
				cutoff := time.Now().Add(-olderThan)
				if dryRun {
					res, err := st.PurgeCandidates(cmd.Context(), cutoff)
					if err == nil {
						fmt.Fprintf(out, "would purge %d records, %d attempts and %d payloads completed before %s\n",
							res.Records, res.Attempts, res.Payloads, cutoff.UTC().Format(time.RFC3339))
					}
					return err
				}
				began, lastReport := time.Now(), time.Now()
				res, err := tasks.Purge(cmd.Context(), st, olderThan, func(t store.PurgeResult) {
					if time.Since(lastReport) >= time.Second {
						lastReport = time.Now()
						fmt.Fprintf(out, "… %d records, %d attempts, %d payloads so far\n", t.Records, t.Attempts, t.Payloads)
					}
				})
				fmt.Fprintf(out, "purged %d records, %d attempts and %d payloads in %s\n",
					res.Records, res.Attempts, res.Payloads, time.Since(began).Round(time.Millisecond))
				return err
			})
		},
	}
	cmd.Flags().DurationVar(&olderThan, "older-than", tasks.DefaultRetention, "retention window, from each record's completion")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be purged; delete nothing")
	return cmd
}
