package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// TestCIDRIndexMatchesLinear compares indexed lookups with a linear
// search over random tables whose prefixes overlap a lot.
func TestCIDRIndexMatchesLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randAddr := func(v6 bool) netip.Addr {
		if v6 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(4))})
		}
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), byte(rng.IntN(3)), byte(rng.IntN(4))})
	}
	for n := range 200 {
		var text strings.Builder
		depth := 0
		for i := range 60 {
			v6 := rng.IntN(4) == 0
			a := randAddr(v6)
			bits := a.BitLen() - rng.IntN(20)
			p, _ := a.Prefix(bits)
			neg := ""
			if rng.IntN(15) == 0 {
				neg = "!"
			}
			switch r := rng.IntN(20); {
			case r == 0 && depth < 3:
				fmt.Fprintf(&text, "if %s%s\n", neg, p)
				depth++
			case r == 1 && depth > 0:
				text.WriteString("endif\n")
				depth--
			default:
				fmt.Fprintf(&text, "%s%s r%d\n", neg, p, i)
			}
		}
		text.WriteString(strings.Repeat("endif\n", depth))
		m, err := parseCIDR(&source{typ: "cidr", file: "t", data: []byte(text.String())})
		if err != nil {
			t.Fatalf("table %d: %v\n%s", n, err, text.String())
		}
		ct := m.(*cidrTable)
		for range 50 {
			a := randAddr(rng.IntN(4) == 0)
			v, ok := ct.lookup(a.String())
			nv, nok := cidrNaive(ct.items, a)
			if v != nv || ok != nok {
				t.Fatalf("table %d, key %s: index gives %q, %v; linear %q, %v\n%s", n, a, v, ok, nv, nok, text.String())
			}
		}
	}
}

// TestRegexpFiltersMatchNaive compares lookups with and without the
// literal filters over random rules and keys from a small alphabet.
func TestRegexpFiltersMatchNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	word := func() string {
		const letters = "abAB.-K\u212a"
		var b strings.Builder
		for range 1 + rng.IntN(5) {
			b.WriteString(string([]rune(letters)[rng.IntN(len([]rune(letters)))]))
		}
		return b.String()
	}
	for n := range 100 {
		var text strings.Builder
		for i := range 40 {
			flags := []string{"", "i", "x", "ix"}[rng.IntN(4)]
			w := strings.NewReplacer(".", `\.`).Replace(word())
			switch rng.IntN(6) {
			case 0:
				fmt.Fprintf(&text, "!/%s/%s r%d\n", w, flags, i)
			case 1:
				fmt.Fprintf(&text, "/^(.*)%s/%s r%d $1\n", w, strings.TrimSuffix(strings.TrimPrefix(flags, "x"), "x"), i)
			default:
				fmt.Fprintf(&text, "/%s%s/%s r%d\n", w, word(), flags, i)
			}
		}
		for _, parse := range []parseFunc{parseRegexp, parsePCRE} {
			m, err := parse(&source{typ: "regexp", file: "t", data: []byte(text.String())})
			if err != nil {
				t.Fatalf("table %d: %v\n%s", n, err, text.String())
			}
			rt := m.(*reTable)
			for range 50 {
				key := word() + word() + word()
				v, ok := rt.lookup(key)
				nv, nok := reNaive(rt, key)
				if v != nv || ok != nok {
					t.Fatalf("table %d, key %q: %q, %v; without filters %q, %v\n%s", n, key, v, ok, nv, nok, text.String())
				}
			}
		}
	}
}
