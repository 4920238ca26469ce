package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

// newFlagsCmd and the repeaters and records commands are what an operator
// does by hand against the database, without the web role running.
func newFlagsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flags",
		Short: "Show and set per-domain feature flags",
		Long: `Per-domain feature flags. Flags: ` + strings.Join(store.KnownFlags, ", ") + `.

process_repeaters routes a domain's records through the dispatcher (on) or the
legacy per-record path (off); either switch is safe at any time. A domain
without a row follows REPEATERD_PROCESS_REPEATERS_DEFAULT (on).`,
	}
	cmd.AddCommand(newFlagsListCmd(), newFlagsSetCmd())
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
	tw := newOpsTable(cmd.OutOrStdout(), "DOMAIN", "FLAG", "ENABLED", "SOURCE", "UPDATED")
	for _, d := range sortedUniqueStrings(domains) {
		for _, f := range store.KnownFlags {
			if r, ok := set[[2]string{d, f}]; ok {
				fmt.Fprintf(tw, "%s\t%s\t%s\tset\t%s\n", d, f, onOff(r.Enabled), r.UpdatedAt.Format(time.RFC3339))
				continue
			}
			on, err := st.DomainFlagEnabled(ctx, d, f)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\tdefault\t-\n", d, f, onOff(on))
		}
	}
	return tw.Flush()
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

func newRepeatersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repeaters",
		Short: "List, pause and resume repeaters",
	}
	cmd.AddCommand(newRepeatersListCmd(),
		newPauseCmd("pause", "Pause a repeater: its records wait, nothing is sent", true),
		newPauseCmd("resume", "Resume a paused repeater", false))
	return cmd
}

func newRepeatersListCmd() *cobra.Command {
	var domain string
	var includeDeleted bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List repeaters (URLs without their query strings, which may hold tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *store.Store) error {
				return listRepeaters(cmd, st, store.ListRepeatersParams{Domain: domain, IncludeDeleted: includeDeleted})
			})
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain's repeaters")
	cmd.Flags().BoolVar(&includeDeleted, "include-deleted", false, "include deleted repeaters")
	return cmd
}

func listRepeaters(cmd *cobra.Command, st *store.Store, p store.ListRepeatersParams) error {
	tw := newOpsTable(cmd.OutOrStdout(), "ID", "DOMAIN", "NAME", "URL", "STATUS", "NEXT_ATTEMPT")
	p.Limit = 500
	for {
		page, err := st.ListRepeaters(cmd.Context(), p)
		if err != nil {
			return err
		}
		for _, r := range page {
			next := "-"
			if r.NextAttemptAt != nil {
				next = r.NextAttemptAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Domain, r.Name, redactURL(r.URL), repeaterStatus(&r), next)
		}
		if len(page) < p.Limit {
			return tw.Flush()
		}
		p.AfterID = page[len(page)-1].ID
	}
}

func repeaterStatus(r *store.Repeater) string {
	switch {
	case r.IsDeleted:
		return "deleted"
	case r.IsPaused:
		return "paused"
	case r.NextAttemptAt != nil && r.NextAttemptAt.After(time.Now()):
		return "backoff"
	}
	return "active"
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

func newPauseCmd(use, short string, paused bool) *cobra.Command {
	return newIDCmd(use, short, func(cmd *cobra.Command, st *store.Store, id int64) error {
		if err := st.SetPaused(cmd.Context(), id, paused); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "repeater %d %sd\n", id, use)
		return nil
	})
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

func newRecordsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "records",
		Short: "Requeue or cancel repeat records",
	}
	cmd.AddCommand(
		newRecordChangeCmd("requeue", "Make a record ready again now; a finished one gets another max_attempts tries",
			(*store.Store).RequeueRecord),
		newRecordChangeCmd("cancel", "Cancel a ready record (it will not be sent)", (*store.Store).CancelRecord),
	)
	return cmd
}

type recordChange func(*store.Store, context.Context, int64) (*store.RepeatRecord, error)

func newRecordChangeCmd(use, short string, change recordChange) *cobra.Command {
	return newIDCmd(use, short, func(cmd *cobra.Command, st *store.Store, id int64) error {
		rec, err := change(st, cmd.Context(), id)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "record %d: %s, %d of %d tries used\n",
			rec.ID, rec.State, rec.AttemptCount, rec.MaxPossibleTries)
		if rec.RequestedState != nil {
			fmt.Fprintf(cmd.OutOrStdout(), "it is being sent: the %s applies when that send ends\n", rec.RequestedState.Request())
		}
		return nil
	})
}

func parseOpsID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, fmt.Errorf("ID must be a positive integer, not %q", s)
	}
	return id, nil
}

func newOpsTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func sortedUniqueStrings(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
