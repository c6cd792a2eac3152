package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// defaultHealthURL is the readiness endpoint of a worker or scheduler started
// with --metrics-addr :9090.
const defaultHealthURL = "http://127.0.0.1:9090/readyz"

// healthcheckOptions are the inputs of `threadmill healthcheck`.
type healthcheckOptions struct {
	URL     string
	Timeout time.Duration
}

func (o *healthcheckOptions) validate() error {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("URL %q: want http://host:port/path", o.URL)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	return nil
}

// run GETs the URL and reports whether it answered 2xx.
func (o *healthcheckOptions) run(ctx context.Context, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", o.URL, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", o.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	text := strings.TrimSpace(string(body))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s: %s", o.URL, resp.Status, text)
	}
	if text != "" {
		_, err = fmt.Fprintln(stdout, text)
	}
	return err
}

func newHealthcheckCmd() *cobra.Command {
	o := &healthcheckOptions{}
	cmd := &cobra.Command{
		Use:   "healthcheck [URL]",
		Short: "Exit 0 when a threadmill endpoint answers 2xx (for container health checks)",
		Long: `Send GET to URL (default ` + defaultHealthURL + `, the readiness
endpoint of a worker or scheduler started with --metrics-addr :9090) and
exit 0 when it answers 2xx, 1 otherwise, printing what it answered.

The container image has no shell and no curl; docker-compose.yml uses this
command as the health check of its services.`,
		Example: `  threadmill healthcheck
  threadmill healthcheck http://127.0.0.1:9090/healthz
  threadmill healthcheck --timeout 2s http://simulator:8080/api/health`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.URL = defaultHealthURL
			if len(args) == 1 {
				o.URL = args[0]
			}
			if err := o.validate(); err != nil {
				return withCode(exitUsage, err)
			}
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}
