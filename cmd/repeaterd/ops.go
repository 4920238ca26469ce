package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

// newFlagsCmd and the repeaters and records commands are what an operator
// does by hand against the database, without the web role running.
func newFlagsCmd() *cobra.Command {
	cmd := newGroupCmd("flags", "Show and set per-domain feature flags", newFlagsListCmd(), newFlagsSetCmd())
	cmd.Long = `Per-domain feature flags. Flags: ` + strings.Join(store.KnownFlags, ", ") + `.

process_repeaters routes a domain's records through the dispatcher (on) or the
legacy per-record path (off); either switch is safe at any time. A domain
without a row follows REPEATERD_PROCESS_REPEATERS_DEFAULT (on).`
	return cmd
}

func newFlagsListCmd() *cobra.Command {
	var opts store.Options
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every domain's flags, set or defaulted",
		Long: `List the flags of every domain that owns a repeater or has a flag set.
SOURCE is "set" for a row in domain_flags, "default" for a domain that
follows --process-repeaters-default.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			return withStoreOptions(cmd, opts, func(st *store.Store) error { return listFlags(cmd, st) })
		},
	}
	cmd.Flags().Var((*negatedBool)(&opts.LegacyByDefault), "process-repeaters-default", "process_repeaters flag of domains without a row")
	cmd.Flags().Lookup("process-repeaters-default").NoOptDefVal = "true"
	annotateEnv(cmd.Flags())
	return cmd
}

// flagView is one domain's flag: set in domain_flags, or its default.
type flagView struct {
	Domain    string     `json:"domain"`
	Flag      string     `json:"flag"`
	Enabled   bool       `json:"enabled"`
	Source    string     `json:"source"` // "set" or "default"
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

func listFlags(cmd *cobra.Command, st *store.Store) error {
	ctx := cmd.Context()
	rows, err := st.ListDomainFlags(ctx)
	if err != nil {
		return err
	}
	domains, err := st.Domains(ctx)
	if err != nil {
		return err
	}
	set := map[[2]string]store.DomainFlag{}
	for _, r := range rows {
		set[[2]string{r.Domain, r.Flag}] = r
		domains = append(domains, r.Domain)
	}
	var views []flagView
	for _, d := range sortedUniqueStrings(domains) {
		for _, f := range store.KnownFlags {
			if r, ok := set[[2]string{d, f}]; ok {
				views = append(views, flagView{Domain: d, Flag: f, Enabled: r.Enabled, Source: "set", UpdatedAt: &r.UpdatedAt})
				continue
			}
			on, err := st.DomainFlagEnabled(ctx, d, f)
			if err != nil {
				return err
			}
			views = append(views, flagView{Domain: d, Flag: f, Enabled: on, Source: "default"})
		}
	}
	return emit(cmd, views, []string{"DOMAIN", "FLAG", "ENABLED", "SOURCE", "UPDATED"}, func(w io.Writer) {
		for _, v := range views {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.Domain, v.Flag, onOff(v.Enabled), v.Source, timeOrDash(v.UpdatedAt))
		}
	})
}

func newFlagsSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "set DOMAIN FLAG on|off",
		Short:   "Turn a domain's flag on or off",
		Example: "  repeaterd flags set acme process_repeaters off",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, flag := args[0], args[1]
			on, err := parseOnOff(args[2])
			if err != nil {
				return err
			}
			if err := store.ValidateFlag(flag); err != nil {
				return err
			}
			return withStore(cmd, func(st *store.Store) error {
				if err := st.SetDomainFlag(cmd.Context(), domain, flag, on); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s\n", domain, flag, onOff(on))
				return nil
			})
		},
	}
}

func parseOnOff(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on", "true", "1", "yes":
		return true, nil
	case "off", "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("%q is not on or off", s)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// redactURL drops the query and fragment: tokens often travel there.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable)"
	}
	redacted := u.RawQuery != ""
	u.RawQuery, u.Fragment, u.User = "", "", nil
	if redacted {
		return u.String() + "?…"
	}
	return u.String()
}

// newIDCmd is a command that takes one positive ID and acts on the store.
func newIDCmd(use, short string, act func(cmd *cobra.Command, st *store.Store, id int64) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseOpsID(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd, func(st *store.Store) error { return act(cmd, st, id) })
		},
	}
}

func parseOpsID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("ID must be a positive integer, not %q", s)
	}
	return id, nil
}

func sortedUniqueStrings(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
