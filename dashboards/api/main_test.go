package api_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"repeaterd/dashboards/api"
	"repeaterd/dashboards/api/apitest"
)

// TestMain runs the suite, then, when it ran whole and passed, fails it if
// a served operation was never exercised: its answers were never checked
// against openapi.json.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code != 0 || flag.Lookup("test.run").Value.String() != "" || testing.Short() {
		os.Exit(code)
	}
	a, err := api.New(api.Config{}, nil)
	if err != nil {
		panic(err)
	}
	for _, r := range a.Routes() {
		if !apitest.Exercised(r) {
			fmt.Fprintf(os.Stderr, "contract: no test sends %s, so its answers are not checked against openapi.json\n", r)
			code = 1
		}
	}
	os.Exit(code)
}
