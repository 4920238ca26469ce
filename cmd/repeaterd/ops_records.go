package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

func newRecordsCmd() *cobra.Command {
	return newGroupCmd("records", "List, show, requeue and cancel repeat records",
		newRecordsListCmd(), newRecordShowCmd(),
		newRecordChangeCmd("requeue", "Make records due again now; a finished one gets another max_attempts tries",
			(*store.Store).RequeueRecord),
		newRecordChangeCmd("cancel", "Cancel ready records (they will not be sent)", (*store.Store).CancelRecord),
	)
}

// recordView is a record as the CLI prints it: its state by name, and an
// operator's request waiting for a send in flight.
type recordView struct {
	*store.RepeatRecord
	State     string          `json:"state"`
	Requested string          `json:"requested_state,omitempty"`
	Attempts  []store.Attempt `json:"attempts,omitempty"`
}

func viewRecord(r *store.RepeatRecord) recordView {
	v := recordView{RepeatRecord: r, State: r.State.String()}
	if r.RequestedState != nil {
		v.Requested = r.RequestedState.Request()
	}
	return v
}

// recordFilter selects records by repeater, domain and state.
type recordFilter struct {
	repeaterID int64
	domain     string
	state      string
}

func (f *recordFilter) bind(cmd *cobra.Command) {
	cmd.Flags().Int64Var(&f.repeaterID, "repeater", 0, "only this repeater's records")
	cmd.Flags().StringVar(&f.domain, "domain", "", "only this domain's records")
	cmd.Flags().StringVar(&f.state, "state", "", "only records in this state (pending, fail, success, cancelled, empty, payload_rejected)")
}

func (f *recordFilter) params() (store.ListRecordsParams, error) {
	p := store.ListRecordsParams{RepeaterID: f.repeaterID, Domain: f.domain}
	if f.state != "" {
		s, err := store.ParseState(f.state)
		if err != nil {
			return p, err
		}
		p.State = s
	}
	return p, nil
}

func (f *recordFilter) empty() bool { return f.repeaterID == 0 && f.domain == "" && f.state == "" }

func newRecordsListCmd() *cobra.Command {
	var f recordFilter
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List records, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := f.params()
			if err != nil {
				return err
			}
			if limit < 1 || limit > 1000 {
				return store.Errorf(store.EINVALID, "--limit %d: want 1 to 1000", limit)
			}
			p.Limit = limit
			return withStore(cmd, func(st *store.Store) error {
				recs, err := st.ListRecords(cmd.Context(), p)
				if err != nil {
					return err
				}
				views := viewsOf(recs, viewRecord)
				return emit(cmd, views, []string{"ID", "REPEATER", "STATE", "TRIES", "NEXT_CHECK", "REGISTERED"}, func(w io.Writer) {
					for _, v := range views {
						fmt.Fprintf(w, "%d\t%d\t%s\t%d/%d\t%s\t%s\n", v.ID, v.RepeaterID, v.State+requestMark(v),
							v.AttemptCount, v.MaxPossibleTries, v.NextCheck.UTC().Format(time.RFC3339), v.RegisteredAt.UTC().Format(time.RFC3339))
					}
				})
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().IntVar(&limit, "limit", 100, "most records to list (1 to 1000)")
	return cmd
}

func requestMark(v recordView) string {
	if v.Requested == "" {
		return ""
	}
	return " (" + v.Requested + " waiting)"
}

func newRecordShowCmd() *cobra.Command {
	return newIDCmd("show", "Show a record with its attempts", func(cmd *cobra.Command, st *store.Store, id int64) error {
		rec, attempts, err := st.GetRecord(cmd.Context(), id)
		if err != nil {
			return err
		}
		v := viewRecord(rec)
		v.Attempts = attempts
		return emit(cmd, v, []string{"ATTEMPTED", "STATE", "STATUS", "DURATION", "MESSAGE"}, func(w io.Writer) {
			fmt.Fprintf(w, "record %d of repeater %d: %s%s, %d of %d tries used, next check %s\n", v.ID, v.RepeaterID, v.State,
				requestMark(v), v.AttemptCount, v.MaxPossibleTries, v.NextCheck.UTC().Format(time.RFC3339))
			for _, a := range attempts {
				fmt.Fprintf(w, "%s\t%s\t%d\t%dms\t%s\n", a.CreatedAt.UTC().Format(time.RFC3339), a.State, a.StatusCode,
					a.DurationMS, store.Truncate(a.Message, 80, "…"))
			}
		})
	})
}

type recordChange func(*store.Store, context.Context, int64) (*store.RepeatRecord, error)

// bulkConfirmAt is how many records a bulk change may touch without --yes.
const bulkConfirmAt = 100

// newRecordChangeCmd requeues or cancels the records named by id, or every
// record matching a filter (more than bulkConfirmAt only with --yes). Each
// record goes through the store's one operation, so a record being sent
// takes the change when its send ends; refusals are counted, not fatal.
func newRecordChangeCmd(use, short string, change recordChange) *cobra.Command {
	var f recordFilter
	var yes bool
	cmd := &cobra.Command{
		Use:   use + " [ID…] [--repeater R] [--domain D] [--state S]",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == f.empty() {
				return store.Errorf(store.EINVALID, "name record IDs or a filter (--repeater, --domain, --state), not both")
			}
			return withStore(cmd, func(st *store.Store) error {
				ids, err := selectRecords(cmd, st, args, f)
				if err != nil {
					return err
				}
				if len(ids) > bulkConfirmAt && !yes {
					return fmt.Errorf("%d records match: add --yes to %s them all", len(ids), use)
				}
				return changeRecords(cmd, st, ids, change, use)
			})
		},
	}
	f.bind(cmd)
	cmd.Flags().BoolVar(&yes, "yes", false, fmt.Sprintf("go ahead when more than %d records match", bulkConfirmAt))
	return cmd
}

// selectRecords returns the ids given, or those of every record matching f.
func selectRecords(cmd *cobra.Command, st *store.Store, args []string, f recordFilter) ([]int64, error) {
	if len(args) > 0 {
		ids := make([]int64, len(args))
		for i, a := range args {
			id, err := parseOpsID(a)
			if err != nil {
				return nil, err
			}
			ids[i] = id
		}
		return ids, nil
	}
	p, err := f.params()
	if err != nil {
		return nil, err
	}
	var ids []int64
	p.Limit = 1000
	for {
		page, err := st.ListRecords(cmd.Context(), p)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			ids = append(ids, r.ID)
		}
		if len(page) < p.Limit {
			return ids, nil
		}
		p.AfterID = page[len(page)-1].ID
	}
}

// changeRecords applies change to each record and reports each outcome and
// the counts; it fails when any record was refused.
func changeRecords(cmd *cobra.Command, st *store.Store, ids []int64, change recordChange, use string) error {
	var done, waiting, refused int
	out := cmd.OutOrStdout()
	for _, id := range ids {
		rec, err := change(st, cmd.Context(), id)
		switch {
		case err != nil && len(ids) == 1:
			return err // one record: its refusal is the command's error
		case store.ErrorCode(err) == store.ENOTFOUND || store.ErrorCode(err) == store.ECONFLICT:
			refused++
			fmt.Fprintf(cmd.ErrOrStderr(), "record %d: %v\n", id, err)
		case err != nil:
			return err
		case rec.RequestedState != nil:
			waiting++
			fmt.Fprintf(out, "record %d: being sent; the %s applies when that send ends\n", id, use)
		default:
			done++
			fmt.Fprintf(out, "record %d: %s, %d of %d tries used\n", id, rec.State, rec.AttemptCount, rec.MaxPossibleTries)
		}
	}
	if len(ids) > 1 {
		fmt.Fprintf(out, "%s: %d done, %d waiting for a send in flight, %d refused\n", use, done, waiting, refused)
	}
	if refused > 0 {
		return errors.New(pluralize(refused, "record was", "records were") + " refused")
	}
	return nil
}

func pluralize(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
