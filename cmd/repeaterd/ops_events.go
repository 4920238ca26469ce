package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

// maxEventBytes bounds an event read by `events send`, as the API bounds
// payloads by default.
const maxEventBytes = 1 << 20

func newEventsCmd() *cobra.Command {
	var payload, file, contentType, eventType, key string
	send := &cobra.Command{
		Use:   "send DOMAIN (--payload JSON | --file PATH)",
		Short: "Send one payload to every active repeater of a domain subscribed to its type (fan-out)",
		Example: `  repeaterd events send acme --payload '{"event":"created"}'
  repeaterd events send acme --type case.updated --idempotency-key evt-42 --file event.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := eventBody(cmd, payload, file, contentType)
			if err != nil {
				return err
			}
			return withStore(cmd, func(st *store.Store) error {
				recs, _, err := st.PublishEvent(cmd.Context(), store.EventParams{
					Domain: args[0], ContentType: contentType, Body: body, Type: eventType, IdempotencyKey: key,
				})
				if err != nil {
					return err
				}
				views := viewsOf(recs, viewRecord)
				return emit(cmd, views, []string{"RECORD", "REPEATER", "STATE"}, func(w io.Writer) {
					for _, v := range views {
						fmt.Fprintf(w, "%d\t%d\t%s\n", v.ID, v.RepeaterID, v.State)
					}
				})
			})
		},
	}
	send.Flags().StringVar(&payload, "payload", "", "the payload, inline")
	send.Flags().StringVar(&file, "file", "", "read the payload from this file (- for stdin)")
	send.Flags().StringVar(&contentType, "content-type", "application/json", "the payload's content type")
	send.Flags().StringVar(&eventType, "type", "", "the event's type (e.g. case.updated): only repeaters subscribed to it receive it")
	send.Flags().StringVar(&key, "idempotency-key", "", "a key that makes a retried send safe (unique per domain): the same key and payload answer the first send's records")
	return newGroupCmd("events", "Send events fanned out to a domain's repeaters", send)
}

// eventBody reads the payload from exactly one of --payload and --file; a
// JSON content type must carry valid JSON.
func eventBody(cmd *cobra.Command, payload, file, contentType string) ([]byte, error) {
	if (payload == "") == (file == "") {
		return nil, store.Errorf(store.EINVALID, "give the payload with --payload or --file (one of them)")
	}
	body := []byte(payload)
	if file != "" {
		r := cmd.InOrStdin()
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			r = f
		}
		var err error
		if body, err = io.ReadAll(io.LimitReader(r, maxEventBytes+1)); err != nil {
			return nil, err
		}
	}
	if len(body) > maxEventBytes {
		return nil, store.Errorf(store.EINVALID, "the payload is over %d bytes", maxEventBytes)
	}
	if contentType == "application/json" && !json.Valid(body) {
		return nil, store.Errorf(store.EINVALID, "the payload is not valid JSON (set --content-type for other bodies)")
	}
	return body, nil
}

func newStatsCmd() *cobra.Command {
	var domain string
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Records by domain, repeater and state (from the WAL-kept counts; live counts when no slot feeds them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *store.Store) error {
				counts, err := st.RecordCounts(cmd.Context(), domain)
				if err != nil {
					return err
				}
				type row struct {
					Domain     string `json:"domain"`
					RepeaterID int64  `json:"repeater_id"`
					State      string `json:"state"`
					Count      int64  `json:"count"`
				}
				out := struct {
					Live   bool  `json:"live"`
					Counts []row `json:"counts"`
				}{Live: counts.Live, Counts: []row{}}
				for _, c := range counts.Counts {
					out.Counts = append(out.Counts, row{c.Domain, c.RepeaterID, c.State.String(), c.Count})
				}
				return emit(cmd, out, []string{"DOMAIN", "REPEATER", "STATE", "COUNT"}, func(w io.Writer) {
					for _, c := range out.Counts {
						fmt.Fprintf(w, "%s\t%d\t%s\t%d\n", c.Domain, c.RepeaterID, c.State, c.Count)
					}
					if out.Live {
						fmt.Fprintln(w, "(live counts: no replication slot feeds the stats; run the stats role)")
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain")
	return cmd
}
