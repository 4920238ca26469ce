package main

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"repeaterd/store"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "repeaterd",
		Short:         "Forward data from a multi-tenant application to its users' HTTP endpoints",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("database-url", "", "Postgres URL (env DATABASE_URL)")
	root.PersistentFlags().String("redis-url", "", "Redis URL (env REDIS_URL)")
	root.PersistentFlags().StringP("output", "o", outputTable, "output of the operations commands: table or json")
	root.AddCommand(
		newRunCmd(),
		newMigrateCmd(),
		newFlagsCmd(),
		newRepeatersCmd(),
		newConnectionsCmd(),
		newRecordsCmd(),
		newEventsCmd(),
		newStatsCmd(),
		newInvariantsCmd(),
		newPurgeCmd(),
		newHealthcheckCmd(),
		newTokensCmd(),
		newSecretsCmd(),
		newBenchCmd(),
		newBenchSinkCmd(),
		newBenchStatsConsumerCmd(),
		newVersionCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "repeaterd", version) },
	}
}

// databaseURL returns --database-url, else DATABASE_URL.
func databaseURL(cmd *cobra.Command) (string, error) {
	return serviceURL(cmd, "database-url", "DATABASE_URL")
}

// redisURL returns --redis-url, else REDIS_URL.
func redisURL(cmd *cobra.Command) (string, error) {
	return serviceURL(cmd, "redis-url", "REDIS_URL")
}

func serviceURL(cmd *cobra.Command, flag, env string) (string, error) {
	if v, _ := cmd.Flags().GetString(flag); v != "" {
		return v, nil
	}
	if v := os.Getenv(env); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("%s is not set (use --%s or the environment; `make services` prints them)", env, flag)
}

// withStore opens the store on DATABASE_URL for one command.
func withStore(cmd *cobra.Command, fn func(*store.Store) error) error {
	return withStoreOptions(cmd, store.Options{}, fn)
}

// withStoreOptions is withStore with the store's options. Secrets are
// opened with REPEATERD_SECRET_KEY's keys unless opts names a keyring.
func withStoreOptions(cmd *cobra.Command, opts store.Options, fn func(*store.Store) error) error {
	url, err := databaseURL(cmd)
	if err != nil {
		return err
	}
	if opts.Secrets == nil {
		if opts.Secrets, err = envKeyring(); err != nil {
			return err
		}
	}
	st, err := store.OpenWith(cmd.Context(), url, opts)
	if err != nil {
		return err
	}
	defer st.Close()
	return hintMigrate(fn(st))
}

// hintMigrate adds the fix to an error that says the schema is missing.
func hintMigrate(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" /* undefined_table */ {
		return fmt.Errorf("%w\nthe database has no repeaterd schema (or an old one): run `repeaterd migrate`", err)
	}
	return err
}

// annotateEnv names each flag's environment twin in its help text.
func annotateEnv(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name != "help" {
			f.Usage += " (env " + envName(f.Name) + ")"
		}
	})
}

// bindEnv gives the flags of fs (every one, or only those named) their
// REPEATERD_* environment twins: a flag not given on the command line takes
// the variable's value when set.
func bindEnv(fs *pflag.FlagSet, only ...string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if len(only) > 0 && !slices.Contains(only, f.Name) {
			return
		}
		name := envName(f.Name)
		if v, ok := os.LookupEnv(name); ok && !f.Changed && err == nil {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, serr)
			}
		}
	})
	return err
}
