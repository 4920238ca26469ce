package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations (idempotent), then refresh the invariants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var applied int
			err := withMigrator(cmd, func(m *store.Migrator) error {
				res, err := m.Up(cmd.Context())
				for _, r := range res {
					fmt.Fprintf(cmd.OutOrStdout(), "applied %s (%s)\n", r.Source.Path, r.Duration)
				}
				if err == nil && len(res) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "database is up to date")
				}
				applied = len(res)
				return err
			})
			if err != nil || applied == 0 {
				return err
			}
			// A migration can change what the checks mean or what they read.
			return withStore(cmd, func(st *store.Store) error {
				if err := st.RefreshInvariants(cmd.Context()); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "invariants refreshed")
				return nil
			})
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show which migrations are applied",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMigrator(cmd, func(m *store.Migrator) error { return m.Status(cmd.Context(), cmd.OutOrStdout()) })
		},
	}, &cobra.Command{
		Use:   "down",
		Short: "Roll back the latest migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withMigrator(cmd, func(m *store.Migrator) error {
				r, err := m.Down(cmd.Context())
				if r != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "rolled back %s\n", r.Source.Path)
				}
				return err
			})
		},
	})
	return cmd
}

func withMigrator(cmd *cobra.Command, fn func(*store.Migrator) error) error {
	url, err := databaseURL(cmd)
	if err != nil {
		return err
	}
	m, err := store.NewMigrator(url)
	if err != nil {
		return err
	}
	defer m.Close()
	return fn(m)
}
