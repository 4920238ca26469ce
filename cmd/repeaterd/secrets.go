package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"repeaterd/store"
)

// secretKeyEnv holds the keys secrets are sealed with (store.ParseKeyring).
const secretKeyEnv = "REPEATERD_SECRET_KEY"

// envKeyring is the keyring of REPEATERD_SECRET_KEY, nil when unset: every
// command that reads repeaters opens their secrets with it.
func envKeyring() (*store.Keyring, error) { return store.ParseKeyring(os.Getenv(secretKeyEnv)) }

func newSecretsCmd() *cobra.Command {
	reencrypt := &cobra.Command{
		Use:   "reencrypt",
		Short: "Seal every stored secret with the current key (plaintext and older keys alike)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *store.Store) error {
				if !st.SecretsEncrypted() {
					return fmt.Errorf("%s is not set: there is no key to encrypt with (make one with `repeaterd secrets new-key`)", secretKeyEnv)
				}
				res, err := st.ReencryptSecrets(cmd.Context())
				fmt.Fprintf(cmd.OutOrStdout(), "%d repeaters read, %d re-encrypted with key %s\n",
					res.Repeaters, res.Rewritten, st.SecretKeyID())
				fmt.Fprintf(cmd.OutOrStdout(), "%d connections read, %d re-encrypted\n", res.Connections, res.ConnectionsRewritten)
				return err
			})
		},
	}
	newKey := &cobra.Command{
		Use:   "new-key",
		Short: "Print a fresh random key for " + secretKeyEnv,
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), store.NewSecretKey()) },
	}
	cmd := newGroupCmd("secrets", "Encryption of signing secrets and header values at rest", reencrypt, newKey)
	cmd.Long = `Repeaters' signing secrets and header values are stored encrypted (AES-256-GCM)
with the first key of ` + secretKeyEnv + ` (comma-separated keys, 32 bytes each as
base64 or hex); the other keys are only read. To rotate: put a new key first,
restart, run "repeaterd secrets reencrypt", then drop the old key.`
	return cmd
}
