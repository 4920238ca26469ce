package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// Output formats of the operations commands (`-o`).
const (
	outputTable = "table"
	outputJSON  = "json"
)

// outputFormat is the command's -o value, checked.
func outputFormat(cmd *cobra.Command) (string, error) {
	f, _ := cmd.Flags().GetString("output")
	switch f {
	case "", outputTable:
		return outputTable, nil
	case outputJSON:
		return outputJSON, nil
	}
	return "", fmt.Errorf("-o %q: want table or json", f)
}

// emit writes v as indented JSON with -o json, or as the table that table
// writes (a header, then one tab-separated line per row) otherwise.
func emit(cmd *cobra.Command, v any, header []string, rows func(w io.Writer)) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	if format == outputJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	rows(tw)
	return tw.Flush()
}

// newGroupCmd is a command that only holds subcommands: run alone, or with
// an unknown subcommand, it shows its usage and fails (a typo must not exit 0).
func newGroupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%s needs a subcommand (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())
			}
			return fmt.Errorf("unknown command %q for %s (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}

// viewsOf renders each element of xs with view.
func viewsOf[T, V any](xs []T, view func(*T) V) []V {
	out := make([]V, len(xs))
	for i := range xs {
		out[i] = view(&xs[i])
	}
	return out
}
