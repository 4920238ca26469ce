package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"repeaterd/repeaters"
	"repeaterd/store"
)

// Connections on the command line: list, show, create, delete and attach
// (store/connections.go), and the repeater commands rotate-secret and test
// that go with them. Secrets are read from a file or stdin, never from the
// command line, and never printed.

func newConnectionsCmd() *cobra.Command {
	return newGroupCmd("connections", "Endpoint authentication shared by a domain's repeaters: list, show, create, delete, attach",
		newConnectionsListCmd(), newConnectionShowCmd(), newConnectionCreateCmd(), newConnectionAttachCmd(),
		newIDCmd("delete", "Delete a connection no active repeater uses", func(cmd *cobra.Command, st *store.Store, id int64) error {
			return report(cmd, st.DeleteConnection(cmd.Context(), id), "connection %d deleted", id)
		}),
	)
}

// connectionView is a connection as the CLI prints it: never a secret,
// only which are set.
type connectionView struct {
	*store.Connection
	SecretsSet []string `json:"secrets_set"`
	UsedBy     []int64  `json:"used_by"`
	Warning    string   `json:"warning,omitempty"`
}

func viewConnection(c *store.Connection, usedBy []int64) connectionView {
	v := connectionView{Connection: c, SecretsSet: []string{}, UsedBy: usedBy}
	for name, val := range map[string]string{"password": c.Password, "token": c.Token, "api_key": c.APIKey, "client_secret": c.ClientSecret} {
		if val != "" {
			v.SecretsSet = append(v.SecretsSet, name)
		}
	}
	if v.UsedBy == nil {
		v.UsedBy = []int64{}
	}
	if c.SkipTLSVerify {
		v.Warning = "TLS VERIFICATION IS OFF for this connection"
	}
	return v
}

func newConnectionsListCmd() *cobra.Command {
	var domain string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List connections and the repeaters using them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *store.Store) error {
				conns, err := st.ListConnections(cmd.Context(), store.ListConnectionsParams{Domain: domain, Limit: 1000})
				if err != nil {
					return err
				}
				ids := make([]int64, len(conns))
				for i := range conns {
					ids[i] = conns[i].ID
				}
				used, err := st.ConnectionsUsedBy(cmd.Context(), ids)
				if err != nil {
					return err
				}
				views := viewsOf(conns, func(c *store.Connection) connectionView { return viewConnection(c, used[c.ID]) })
				return emit(cmd, views, []string{"ID", "DOMAIN", "NAME", "AUTH", "TLS", "USED_BY"}, func(w io.Writer) {
					for _, v := range views {
						fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%v\n", v.ID, v.Domain, v.Name, v.AuthType, tlsLabel(v.Connection), v.UsedBy)
					}
				})
			})
		},
	}
	cmd.Flags().StringVar(&domain, "domain", "", "only this domain's connections")
	return cmd
}

func tlsLabel(c *store.Connection) string {
	switch {
	case c.SkipTLSVerify:
		return "NOT VERIFIED"
	case c.CAPEM != "":
		return "custom CA"
	}
	return "system roots"
}

func newConnectionShowCmd() *cobra.Command {
	return newIDCmd("show", "Show a connection (never its secrets)", func(cmd *cobra.Command, st *store.Store, id int64) error {
		c, err := st.GetConnection(cmd.Context(), id)
		if err != nil {
			return err
		}
		used, err := st.ConnectionsUsedBy(cmd.Context(), []int64{id})
		if err != nil {
			return err
		}
		return emitConnection(cmd, viewConnection(c, used[id]))
	})
}

func emitConnection(cmd *cobra.Command, v connectionView) error {
	return emit(cmd, v, []string{"FIELD", "VALUE"}, func(w io.Writer) {
		for _, kv := range [][2]any{
			{"id", v.ID}, {"domain", v.Domain}, {"name", v.Name}, {"auth_type", v.AuthType}, {"username", v.Username},
			{"api_key_header", v.APIKeyHeader}, {"token_url", redactURL(v.TokenURL)}, {"client_id", v.ClientID}, {"scope", v.Scope},
			{"credentials_in", v.CredentialsIn}, {"tls", tlsLabel(v.Connection)}, {"secrets_set", strings.Join(v.SecretsSet, ",")},
			{"used_by", v.UsedBy},
		} {
			fmt.Fprintf(w, "%s\t%v\n", kv[0], kv[1])
		}
		if v.Warning != "" {
			fmt.Fprintf(w, "WARNING\t%s\n", v.Warning)
		}
	})
}

func newConnectionCreateCmd() *cobra.Command {
	var c store.Connection
	var secretFile, caFile string
	var allowPrivate bool
	cmd := &cobra.Command{
		Use:   "create --domain D --auth-type T [flags]",
		Short: "Create a connection; its secret (password, token, API key or client secret) is read from --secret-file",
		Example: "  repeaterd connections create --domain acme --auth-type bearer --secret-file token.txt\n" +
			"  repeaterd connections create --domain acme --auth-type oauth2_client_credentials \\\n" +
			"      --token-url https://auth.example.com/token --client-id repeaterd --scope hooks --secret-file client-secret.txt",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd.Flags(), "allow-private-targets"); err != nil {
				return err
			}
			if err := readConnectionFiles(cmd, &c, secretFile, caFile); err != nil {
				return err
			}
			if c.TokenURL != "" {
				if err := repeaters.ValidateTokenURL(c.TokenURL, allowPrivate); err != nil {
					return err
				}
			}
			if c.APIKeyHeader != "" && repeaters.IsReservedHeader(c.APIKeyHeader) {
				return store.Errorf(store.EINVALID, "api_key_header %s is set by repeaterd", c.APIKeyHeader)
			}
			return withStore(cmd, func(st *store.Store) error {
				if err := st.CreateConnection(cmd.Context(), &c); err != nil {
					return err
				}
				return emitConnection(cmd, viewConnection(&c, nil))
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&c.Domain, "domain", "", "the owning domain")
	fs.StringVar(&c.Name, "name", "", "a name for people")
	fs.StringVar(&c.AuthType, "auth-type", store.AuthNone, "none, basic, bearer, api_key or oauth2_client_credentials")
	fs.StringVar(&c.Username, "username", "", "basic: the user name")
	fs.StringVar(&c.APIKeyHeader, "api-key-header", "", "api_key: the header that carries the key")
	fs.StringVar(&c.TokenURL, "token-url", "", "oauth2: the token endpoint (https)")
	fs.StringVar(&c.ClientID, "client-id", "", "oauth2: the client id")
	fs.StringVar(&c.Scope, "scope", "", "oauth2: the scope asked for")
	fs.StringVar(&c.CredentialsIn, "credentials-in", "", "oauth2: header (HTTP Basic, default) or body")
	fs.StringVar(&secretFile, "secret-file", "", "read the type's secret from this file (- for stdin)")
	fs.StringVar(&caFile, "ca-file", "", "PEM certificates to trust besides the system roots")
	fs.BoolVar(&c.SkipTLSVerify, "skip-tls-verify", false, "DANGEROUS: do not verify the endpoint's certificate")
	fs.BoolVar(&allowPrivate, "allow-private-targets", false, "allow an http or private token URL (env REPEATERD_ALLOW_PRIVATE_TARGETS)")
	_ = cmd.MarkFlagRequired("domain")
	return cmd
}

// readConnectionFiles reads the secret into the field the auth type keeps
// it in, and the CA file.
func readConnectionFiles(cmd *cobra.Command, c *store.Connection, secretFile, caFile string) error {
	if secretFile != "" {
		secret, err := readSecret(cmd, secretFile)
		if err != nil {
			return err
		}
		switch c.AuthType {
		case store.AuthBasic:
			c.Password = secret
		case store.AuthBearer:
			c.Token = secret
		case store.AuthAPIKey:
			c.APIKey = secret
		case store.AuthOAuth2ClientCredentials:
			c.ClientSecret = secret
		default:
			return store.Errorf(store.EINVALID, "auth type %q takes no secret", c.AuthType)
		}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		c.CAPEM = string(pem)
	}
	return nil
}

func newConnectionAttachCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "attach REPEATER_ID CONNECTION_ID",
		Short: "Make a repeater use a connection of its domain (CONNECTION_ID 0 detaches)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			repID, err := parseOpsID(args[0])
			if err != nil {
				return err
			}
			var connID int64
			if args[1] != "0" {
				if connID, err = parseOpsID(args[1]); err != nil {
					return err
				}
			}
			return withStore(cmd, func(st *store.Store) error {
				r, err := st.GetRepeater(cmd.Context(), repID)
				if err != nil {
					return err
				}
				r.ConnectionID = nil
				if connID != 0 {
					r.ConnectionID = &connID
				}
				return report(cmd, st.UpdateRepeater(cmd.Context(), r), "repeater %d: connection %s", repID, args[1])
			})
		},
	}
}

// newRotateSecretCmd is `repeaters rotate-secret`.
func newRotateSecretCmd() *cobra.Command {
	var secretFile string
	var overlap time.Duration
	cmd := newIDCmd("rotate-secret", "Give a repeater a new signing secret; the old one still signs (a second signature) until --overlap ends",
		func(cmd *cobra.Command, st *store.Store, id int64) error {
			secret, generated := "", secretFile == ""
			if generated {
				secret = repeaters.NewSigningSecret()
			} else {
				var err error
				if secret, err = readSecret(cmd, secretFile); err != nil {
					return err
				}
			}
			r, err := st.RotateSecret(cmd.Context(), id, secret, time.Now().Add(overlap))
			if err != nil {
				return err
			}
			until := "now (there was no secret before)"
			if r.PreviousSecretUntil != nil {
				until = r.PreviousSecretUntil.UTC().Format(time.RFC3339)
			}
			out := map[string]any{"repeater": id, "previous_secret_until": r.PreviousSecretUntil}
			if generated {
				out["signing_secret"] = secret
			}
			return emit(cmd, out, []string{"FIELD", "VALUE"}, func(w io.Writer) {
				fmt.Fprintf(w, "repeater\t%d\nold secret valid until\t%s\n", id, until)
				if generated {
					fmt.Fprintf(w, "new signing secret (shown once)\t%s\n", secret)
				}
			})
		})
	cmd.Use = "rotate-secret ID [--secret-file F] [--overlap 24h]"
	cmd.Flags().StringVar(&secretFile, "secret-file", "", "read the new secret from this file (- for stdin); without it one is generated and printed once")
	cmd.Flags().DurationVar(&overlap, "overlap", 24*time.Hour, "how long the old secret stays valid")
	return cmd
}

// newRepeaterTestCmd is `repeaters test`: one signed test request now,
// through a sender configured as `run`'s (private targets, egress proxy,
// the timeout cap).
func newRepeaterTestCmd() *cobra.Command {
	var cfg repeaters.SenderConfig
	cmd := newIDCmd("test", "Send a signed test request to a repeater's endpoint now and show the answer (writes nothing)",
		func(cmd *cobra.Command, st *store.Store, id int64) error {
			r, err := st.GetRepeater(cmd.Context(), id)
			if err != nil {
				return err
			}
			if cfg.MaxTimeout <= 0 {
				return fmt.Errorf("--max-timeout must be positive, got %s", cfg.MaxTimeout)
			}
			sender := repeaters.NewSender(cfg)
			defer sender.Close()
			res := sender.Probe(cmd.Context(), r)
			return emit(cmd, res, []string{"FIELD", "VALUE"}, func(w io.Writer) {
				fmt.Fprintf(w, "state\t%s\nstatus\t%d\nduration\t%dms\nwebhook_id\t%s\nexcerpt\t%s\n",
					res.State, res.StatusCode, res.DurationMS, res.WebhookID, strings.ReplaceAll(res.Excerpt, "\n", " "))
			})
		})
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		return bindEnv(cmd.Flags(), "allow-private-targets", "egress-proxy", "max-timeout")
	}
	cmd.Flags().BoolVar(&cfg.AllowPrivateTargets, "allow-private-targets", false, "allow a loopback or private endpoint (env REPEATERD_ALLOW_PRIVATE_TARGETS)")
	cmd.Flags().StringVar(&cfg.EgressProxy, "egress-proxy", "", "send through this HTTP proxy (env REPEATERD_EGRESS_PROXY)")
	cmd.Flags().DurationVar(&cfg.MaxTimeout, "max-timeout", store.DefaultMaxTimeout, "cap on the request's timeout, as `run --max-timeout` (env REPEATERD_MAX_TIMEOUT)")
	return cmd
}
