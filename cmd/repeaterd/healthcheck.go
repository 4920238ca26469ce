package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// newHealthcheckCmd is the container HEALTHCHECK: the image has no curl, so
// the binary asks its own process. A process serves /readyz on its web
// address (the web role) or on its metrics address (the other roles).
func newHealthcheckCmd() *cobra.Command {
	var (
		url     string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when this container's repeaterd answers /readyz with 200",
		Long: `Ask a running repeaterd whether it is ready: GET /readyz on --url, by default
on REPEATERD_METRICS_ADDR when set (processes without the web role), else on
REPEATERD_HTTP_ADDR (an address of 0.0.0.0 or :: is asked on loopback). Exit 0
on 200; otherwise print why and exit 1. A degraded role (e.g. the stats role
without its slot) still answers 200, with the detail in the body.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				addr := os.Getenv("REPEATERD_METRICS_ADDR")
				if addr == "" {
					addr = cmp.Or(os.Getenv("REPEATERD_HTTP_ADDR"), "127.0.0.1:8080")
				}
				url = "http://" + loopbackFor(addr) + "/readyz"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", res.Status, body)
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("healthcheck: %s answered %s", url, res.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the /readyz URL to ask (default: from REPEATERD_METRICS_ADDR or REPEATERD_HTTP_ADDR)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	return cmd
}

// loopbackFor turns a listen address into one to dial from the same host:
// an unspecified host (0.0.0.0, ::, none) becomes 127.0.0.1.
func loopbackFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
