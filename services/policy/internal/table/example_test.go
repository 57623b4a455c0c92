package table_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

func Example() {
	dir, err := os.MkdirTemp("", "table")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cidr := "# client_access.cidr\n192.0.2.0/24 REJECT test network\n!198.51.100.0/24 DUNNO\n"
	if err := os.WriteFile(filepath.Join(dir, "client_access.cidr"), []byte(cidr), 0o644); err != nil {
		log.Fatal(err)
	}

	// Relative names are resolved against the configuration directory.
	t, err := table.Open("cidr:client_access.cidr", table.Options{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	for _, addr := range []string{"192.0.2.7", "198.51.100.1", "203.0.113.5"} {
		v, ok, err := t.Lookup(context.Background(), addr)
		fmt.Printf("%s: %q %v %v\n", addr, v, ok, err)
	}

	sender, err := table.Open("regexp:"+filepath.Join(dir, "none"), table.Options{})
	fmt.Println(sender == nil, err != nil)

	inline, _ := table.Open("inline:{ example.com=OK, { spam.example = REJECT no thanks } }", table.Options{})
	v, ok, _ := inline.Lookup(context.Background(), "Spam.Example")
	fmt.Printf("%q %v\n", v, ok)
	// Output:
	// 192.0.2.7: "REJECT test network" true <nil>
	// 198.51.100.1: "" false <nil>
	// 203.0.113.5: "DUNNO" true <nil>
	// true true
	// "REJECT no thanks" true
}
