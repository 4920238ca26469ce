package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

// newTokensCmd manages domain API tokens, as POST/GET/DELETE /api/v1/tokens
// do, straight against the database.
func newTokensCmd() *cobra.Command {
	cmd := newGroupCmd("tokens", "Create, list and revoke per-domain API tokens",
		newTokensCreateCmd(), newTokensListCmd(), newTokensRevokeCmd())
	cmd.Long = `A domain token lets its bearer use /api/v1 for one domain only: its repeaters,
records, events, flags and stats. Anything of another domain answers 404. The
admin token (REPEATERD_API_TOKEN) sees every domain and is not managed here.
A token is printed once, when created; only its SHA-256 is stored.`
	return cmd
}

func newTokensRevokeCmd() *cobra.Command {
	return newIDCmd("revoke", "Revoke a domain token at once", func(cmd *cobra.Command, st *store.Store, id int64) error {
		t, err := st.RevokeAPIToken(cmd.Context(), id)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "token %d (%s, %s…) revoked\n", t.ID, t.Domain, t.Hint)
		return nil
	})
}

func newTokensCreateCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "create DOMAIN",
		Short:   "Create a token for DOMAIN and print it (the only time it is shown)",
		Example: "  repeaterd tokens create acme --name ci",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(st *store.Store) error {
				token, t, err := st.CreateAPIToken(cmd.Context(), args[0], name)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "token %d for domain %s; it is shown only now:\n", t.ID, t.Domain)
				fmt.Fprintln(cmd.OutOrStdout(), token)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a label for people (what uses the token)")
	return cmd
}

func newTokensListCmd() *cobra.Command {
	var p store.ListAPITokensParams
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List domain tokens (their hints, never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *store.Store) error {
				tokens, err := st.ListAPITokens(cmd.Context(), p)
				if err != nil {
					return err
				}
				return emit(cmd, tokens, []string{"ID", "DOMAIN", "NAME", "HINT", "CREATED", "LAST_USED", "REVOKED"}, func(w io.Writer) {
					for _, t := range tokens {
						fmt.Fprintf(w, "%d\t%s\t%s\t%s…\t%s\t%s\t%s\n", t.ID, t.Domain, t.Name, t.Hint,
							timeOrDash(&t.CreatedAt), timeOrDash(t.LastUsedAt), timeOrDash(t.RevokedAt))
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&p.Domain, "domain", "", "only this domain's tokens")
	cmd.Flags().BoolVar(&p.IncludeRevoked, "include-revoked", false, "include revoked tokens")
	return cmd
}
