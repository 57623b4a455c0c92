package maincf

import (
	"os"
	"testing"
)

func TestParseFileMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"0660", 0o660, true}, {"600", 0o600, true}, {" 0777 ", 0o777, true}, {"0", 0, true},
		{"0778", 0, false}, {"01777", 0, false}, {"rw-rw----", 0, false}, {"", 0, false}, {"-1", 0, false},
	} {
		got, err := ParseFileMode(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseFileMode(%q) = %v, %v; want %v (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
