package level_test

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/cl-unshare/cl-unshare/level"
)

func TestMain(m *testing.M) {
	// The examples start real levels: this binary is their init stage.
	level.Init()
	flag.Parse()
	if os.Geteuid() != 0 && flag.Lookup("test.run").Value.String() == "" {
		// The examples need root; the tests do not. -run filters
		// examples too, so only the examples are left out.
		if os.Getenv("CL_UNSHARE_NO_SKIP") != "" {
			fmt.Fprintln(os.Stderr, "level: the examples need root, and CL_UNSHARE_NO_SKIP forbids skipping them")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "level: skipping the examples that start real levels: they need root")
		flag.Set("test.run", "^(Test|ExampleFieldError$|ExampleInit$)")
	}
	os.Exit(m.Run())
}
