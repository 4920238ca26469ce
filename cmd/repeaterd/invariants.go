package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

func newInvariantsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "invariants", Short: "Consistency checks kept in a materialized view"}
	cmd.AddCommand(&cobra.Command{
		Use:   "refresh",
		Short: "Refresh the invariants view now (e.g. after a deploy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *store.Store) error {
				if err := st.RefreshInvariants(cmd.Context()); err != nil {
					return err
				}
				return printInvariants(cmd, st)
			})
		},
	}, &cobra.Command{
		Use:   "show",
		Short: "Show violations as of the last refresh",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *store.Store) error { return printInvariants(cmd, st) })
		},
	})
	return cmd
}

func printInvariants(cmd *cobra.Command, st *store.Store) error {
	ctx := cmd.Context()
	at, err := st.LastInvariantsRefresh(ctx)
	if err != nil {
		return err
	}
	counts, err := st.InvariantCounts(ctx)
	if err != nil {
		return err
	}
	rows, err := st.InvariantRows(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "last refresh\t%s\n\n", at.UTC().Format("2006-01-02 15:04:05Z"))
	fmt.Fprintln(w, "CHECK\tVIOLATIONS")
	for _, c := range store.InvariantChecks {
		fmt.Fprintf(w, "%s\t%d\n", c, counts[c])
	}
	if len(rows) > 0 {
		fmt.Fprintln(w, "\nCHECK\tDOMAIN\tREPEATER\tVIOLATIONS")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", r.Check, r.Domain, r.RepeaterID, r.Violations)
		}
	}
	return w.Flush()
}
