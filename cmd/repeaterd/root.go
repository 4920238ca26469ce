package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

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
	root.AddCommand(newVersionCmd(), newMigrateCmd())
	for _, c := range extraCommands {
		root.AddCommand(c())
	}
	return root
}

// extraCommands lets each command's file register itself.
var extraCommands []func() *cobra.Command

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
	url, err := databaseURL(cmd)
	if err != nil {
		return err
	}
	st, err := store.Open(cmd.Context(), url)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

// bindEnv gives every flag of fs its REPEATERD_* environment twin: a flag
// not given on the command line takes the variable's value when set.
func bindEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		name := "REPEATERD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && !f.Changed && err == nil {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, serr)
			}
		}
		if !strings.Contains(f.Usage, "env ") {
			f.Usage += " (env " + name + ")"
		}
	})
	return err
}

// Small parsers for tests and defaults.
func mustDuration(s string) time.Duration { d, _ := time.ParseDuration(s); return d }
func mustInt(s string) int                { n, _ := strconv.Atoi(s); return n }
