package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"repeaterd/repeaters"
	"repeaterd/store"
)

func newRepeatersCmd() *cobra.Command {
	return newGroupCmd("repeaters", "Create, change, list and pause repeaters; retry a backed-off one now",
		newRepeatersListCmd(), newRepeatersShowCmd(), newRepeaterCreateCmd(), newRepeaterUpdateCmd(),
		newIDCmd("delete", "Delete a repeater: its ready records are cancelled", func(cmd *cobra.Command, st *store.Store, id int64) error {
			return report(cmd, st.DeleteRepeater(cmd.Context(), id), "repeater %d deleted", id)
		}),
		newIDCmd("pause", "Pause a repeater: its records wait, nothing is sent", func(cmd *cobra.Command, st *store.Store, id int64) error {
			return report(cmd, st.SetPaused(cmd.Context(), id, true), "repeater %d paused", id)
		}),
		newIDCmd("resume", "Resume a paused repeater (its backoff, if any, stays: see retry)", func(cmd *cobra.Command, st *store.Store, id int64) error {
			return report(cmd, st.SetPaused(cmd.Context(), id, false), "repeater %d resumed", id)
		}),
		newIDCmd("retry", "Retry a backed-off repeater now: its backoff ends and its next batch is a full one", func(cmd *cobra.Command, st *store.Store, id int64) error {
			return report(cmd, st.RetryNow(cmd.Context(), id), "repeater %d: backoff cleared, dispatching now", id)
		}),
		newRotateSecretCmd(), newRepeaterTestCmd(),
	)
}

// report prints what happened when err is nil.
func report(cmd *cobra.Command, err error, format string, args ...any) error {
	if err == nil {
		fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...)
	}
	return err
}

// repeaterView is a repeater as the CLI prints it: its settings (never its
// secret, header values redacted: they may be credentials), whether it
// signs, and its status.
type repeaterView struct {
	*store.Repeater
	Headers map[string]string `json:"headers"`
	Signed  bool              `json:"signed"`
	Status  string            `json:"status"`
}

func viewRepeater(r *store.Repeater) repeaterView {
	headers := make(map[string]string, len(r.Headers))
	for k := range r.Headers {
		headers[k] = "[redacted]"
	}
	return repeaterView{Repeater: r, Headers: headers, Signed: r.HasSecret(), Status: repeaterStatus(r)}
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
				reps, err := allRepeaters(cmd, st, store.ListRepeatersParams{Domain: domain, IncludeDeleted: includeDeleted})
				if err != nil {
					return err
				}
				views := viewsOf(reps, func(r *store.Repeater) repeaterView {
					r.URL = redactURL(r.URL)
					return viewRepeater(r)
				})
				return emit(cmd, views, []string{"ID", "DOMAIN", "NAME", "URL", "STATUS", "NEXT_ATTEMPT"}, func(w io.Writer) {
					for _, v := range views {
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Domain, v.Name, v.URL, v.Status, timeOrDash(v.NextAttemptAt))
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain's repeaters")
	cmd.Flags().BoolVar(&includeDeleted, "include-deleted", false, "include deleted repeaters")
	return cmd
}

// allRepeaters pages through every repeater matching p.
func allRepeaters(cmd *cobra.Command, st *store.Store, p store.ListRepeatersParams) ([]store.Repeater, error) {
	var out []store.Repeater
	p.Limit = 500
	for {
		page, err := st.ListRepeaters(cmd.Context(), p)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < p.Limit {
			return out, nil
		}
		p.AfterID = page[len(page)-1].ID
	}
}

func newRepeatersShowCmd() *cobra.Command {
	return newIDCmd("show", "Show a repeater's settings and state (never its signing secret)", func(cmd *cobra.Command, st *store.Store, id int64) error {
		r, err := st.GetRepeater(cmd.Context(), id)
		if err != nil {
			return err
		}
		return emitRepeater(cmd, r)
	})
}

func emitRepeater(cmd *cobra.Command, r *store.Repeater) error {
	v := viewRepeater(r)
	return emit(cmd, v, []string{"FIELD", "VALUE"}, func(w io.Writer) {
		for _, kv := range [][2]any{
			{"id", v.ID}, {"domain", v.Domain}, {"name", v.Name}, {"url", redactURL(v.URL)}, {"method", v.RequestMethod},
			{"headers", strings.Join(headerNames(v.Headers), ",")}, {"signed", v.Signed}, {"max_workers", v.MaxWorkers},
			{"rate_limit_per_s", v.RateLimitPerS}, {"rate_burst", v.RateBurst}, {"backoff_codes", []int32(v.BackoffCodes)},
			{"max_attempts", v.MaxAttempts}, {"timeout", v.Timeout()}, {"status", v.Status},
			{"next_attempt_at", timeOrDash(v.NextAttemptAt)}, {"backoff_count", v.BackoffCount},
		} {
			fmt.Fprintf(w, "%s\t%v\n", kv[0], kv[1])
		}
	})
}

// headerNames lists a repeater's header names only: values may be credentials.
func headerNames(h map[string]string) []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return sortedUniqueStrings(out)
}

// repeaterFlags are create's and update's settings; update applies only
// the ones given.
type repeaterFlags struct {
	r            store.Repeater
	headers      []string
	backoffCodes []int
	timeout      time.Duration
	secretFile   string
	allowPrivate bool
	eventTypes   []string
}

func (f *repeaterFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.r.Domain, "domain", "", "the owning domain (create only)")
	fs.StringVar(&f.r.Name, "name", "", "a name for people")
	fs.StringVar(&f.r.URL, "url", "", "the endpoint (https://…)")
	fs.StringVar(&f.r.RequestMethod, "method", "", "POST (default), PUT or PATCH")
	fs.StringArrayVar(&f.headers, "header", nil, "a header to send, Name=value (repeatable; replaces all on update)")
	fs.IntVar(&f.r.MaxWorkers, "max-workers", 0, "requests in flight at once (0 = default 7)")
	fs.Float64Var(&f.r.RateLimitPerS, "rate", 0, "records per second (0 = unlimited)")
	fs.IntVar(&f.r.RateBurst, "rate-burst", 0, "rate limit burst (0 = one second's worth)")
	fs.IntSliceVar(&f.backoffCodes, "backoff-code", nil, "extra status codes that count as failures (repeatable)")
	fs.IntVar(&f.r.MaxAttempts, "max-attempts", 0, "attempts before a record is cancelled (0 = default 6)")
	fs.DurationVar(&f.timeout, "timeout", 0, "per-request timeout (0 = default 30s)")
	fs.StringVar(&f.secretFile, "signing-secret-file", "", "read the signing secret from this file (- for stdin), not the command line")
	fs.BoolVar(&f.allowPrivate, "allow-private-targets", false, "allow a loopback or private URL (env REPEATERD_ALLOW_PRIVATE_TARGETS)")
	fs.StringSliceVar(&f.eventTypes, "event-type", nil, "event types to receive (repeatable or comma-separated; --event-type= for all)")
	fs.StringVar(&f.r.EventFilter, "event-filter", "", `a filter on the events' payloads, e.g. 'case.type == "patient"' ("" = none)`)
}

// apply copies the flags that were given onto r and checks r against the
// sender's policy.
func (f *repeaterFlags) apply(cmd *cobra.Command, r *store.Repeater) error {
	fs := cmd.Flags()
	if err := bindEnv(fs, "allow-private-targets"); err != nil {
		return err
	}
	set := func(name string, fn func()) {
		if fs.Changed(name) {
			fn()
		}
	}
	set("name", func() { r.Name = f.r.Name })
	set("url", func() { r.URL = f.r.URL })
	set("method", func() { r.RequestMethod = strings.ToUpper(f.r.RequestMethod) })
	set("max-workers", func() { r.MaxWorkers = f.r.MaxWorkers })
	set("rate", func() { r.RateLimitPerS = f.r.RateLimitPerS })
	set("rate-burst", func() { r.RateBurst = f.r.RateBurst })
	set("max-attempts", func() { r.MaxAttempts = f.r.MaxAttempts })
	set("timeout", func() { r.TimeoutMS = int(f.timeout / time.Millisecond) })
	set("event-type", func() {
		r.EventTypes = store.TextArray(slices.DeleteFunc(f.eventTypes, func(t string) bool { return t == "" }))
	})
	set("event-filter", func() { r.EventFilter = f.r.EventFilter })
	set("backoff-code", func() {
		r.BackoffCodes = store.Int32Array{}
		for _, c := range f.backoffCodes {
			r.BackoffCodes = append(r.BackoffCodes, int32(c))
		}
	})
	if fs.Changed("header") {
		r.Headers = map[string]string{}
		for _, h := range f.headers {
			name, value, ok := strings.Cut(h, "=")
			if !ok || name == "" {
				return store.Errorf(store.EINVALID, "--header %q: want Name=value", h)
			}
			r.Headers[name] = value
		}
	}
	if f.secretFile != "" {
		secret, err := readSecret(cmd, f.secretFile)
		if err != nil {
			return err
		}
		r.SigningSecret = secret
	}
	return repeaters.CheckTarget(r, f.allowPrivate)
}

func readSecret(cmd *cobra.Command, path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("signing secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func newRepeaterCreateCmd() *cobra.Command {
	var f repeaterFlags
	cmd := &cobra.Command{
		Use:     "create --domain D --url URL [flags]",
		Short:   "Create a repeater",
		Example: "  repeaterd repeaters create --domain acme --name orders --url https://example.com/hook --signing-secret-file secret.txt",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := &store.Repeater{Domain: f.r.Domain}
			if err := f.apply(cmd, r); err != nil {
				return err
			}
			return withStore(cmd, func(st *store.Store) error {
				if err := st.CreateRepeater(cmd.Context(), r); err != nil {
					return err
				}
				return emitRepeater(cmd, r)
			})
		},
	}
	f.bind(cmd.Flags())
	_ = cmd.MarkFlagRequired("domain")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}

func newRepeaterUpdateCmd() *cobra.Command {
	var f repeaterFlags
	cmd := newIDCmd("update", "Change a repeater's settings (only the flags given)", func(cmd *cobra.Command, st *store.Store, id int64) error {
		if cmd.Flags().Changed("domain") {
			return store.Errorf(store.EINVALID, "a repeater's domain cannot change")
		}
		r, err := st.GetRepeater(cmd.Context(), id)
		if err != nil {
			return err
		}
		if err := f.apply(cmd, r); err != nil {
			return err
		}
		if err := st.UpdateRepeater(cmd.Context(), r); err != nil {
			return err
		}
		return emitRepeater(cmd, r)
	})
	f.bind(cmd.Flags())
	return cmd
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

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
