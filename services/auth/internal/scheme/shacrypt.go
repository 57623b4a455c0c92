package scheme

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SHA-crypt ($5$ SHA256-CRYPT, $6$ SHA512-CRYPT), written from the public
// specification "Unix crypt using SHA-256 and SHA-512" (U. Drepper, 2007),
// which glibc's crypt(3) and Dovecot implement.

const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxRounds     = 999999999
	shaCryptMaxSalt       = 16
	cryptAlphabet         = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// shaVariant is one of the two SHA-crypt variants.
type shaVariant struct {
	prefix  string
	newHash func() hash.Hash
	// order lists the digest bytes in the groups of three the output
	// encoding takes them in; the last group may be shorter.
	order [][]int
}

var (
	sha256Crypt = shaVariant{"$5$", sha256.New, [][]int{
		{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
		{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29}, {31, 30},
	}}
	sha512Crypt = shaVariant{"$6$", sha512.New, [][]int{
		{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
		{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51},
		{31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
		{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
		{62, 20, 41}, {63},
	}}
)

// parseSHACrypt splits "$6$[rounds=N$]salt$hash" into its parts.
func (v shaVariant) parse(s string) (rounds int, explicit bool, salt, sum string, err error) {
	rest, ok := strings.CutPrefix(s, v.prefix)
	if !ok {
		return 0, false, "", "", fmt.Errorf("want a hash starting with %s", v.prefix)
	}
	rounds = shaCryptDefaultRounds
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		num, after, found := strings.Cut(r, "$")
		if !found {
			return 0, false, "", "", errors.New("rounds= without '$'")
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 {
			return 0, false, "", "", fmt.Errorf("bad rounds=%q", num)
		}
		rounds, explicit, rest = min(max(n, shaCryptMinRounds), shaCryptMaxRounds), true, after
	}
	salt, sum, _ = strings.Cut(rest, "$")
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	return rounds, explicit, salt, sum, nil
}

// crypt computes the full "$N$[rounds=R$]salt$hash" string.
func (v shaVariant) crypt(password []byte, salt string, rounds int, explicit bool) string {
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	s := []byte(salt)
	// Digest B: password, salt, password.
	hb := v.newHash()
	hb.Write(password)
	hb.Write(s)
	hb.Write(password)
	b := hb.Sum(nil)

	// Digest A.
	ha := v.newHash()
	ha.Write(password)
	ha.Write(s)
	ha.Write(repeatTo(b, len(password)))
	for n := len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			ha.Write(b)
		} else {
			ha.Write(password)
		}
	}
	a := ha.Sum(nil)

	// Digest DP → P sequence; digest DS → S sequence.
	hp := v.newHash()
	for range password {
		hp.Write(password)
	}
	p := repeatTo(hp.Sum(nil), len(password))
	hs := v.newHash()
	for i := 0; i < 16+int(a[0]); i++ {
		hs.Write(s)
	}
	sseq := repeatTo(hs.Sum(nil), len(s))

	c := a
	h := v.newHash()
	for i := 0; i < rounds; i++ {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sseq)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}

	var out strings.Builder
	out.WriteString(v.prefix)
	if explicit {
		fmt.Fprintf(&out, "rounds=%d$", rounds)
	}
	out.WriteString(salt)
	out.WriteByte('$')
	for _, g := range v.order {
		var w uint32
		n := 4
		switch len(g) {
		case 3:
			w = uint32(c[g[0]])<<16 | uint32(c[g[1]])<<8 | uint32(c[g[2]])
		case 2:
			w, n = uint32(c[g[0]])<<8|uint32(c[g[1]]), 3
		case 1:
			w, n = uint32(c[g[0]]), 2
		}
		for ; n > 0; n-- {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	return out.String()
}

// repeatTo returns d repeated to exactly n bytes.
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}
