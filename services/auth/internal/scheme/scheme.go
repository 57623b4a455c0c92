// Package scheme verifies and makes passwords stored in Dovecot's
// "{SCHEME}data" form (https://doc.dovecot.org/configuration_manual/authentication/password_schemes/):
// {PLAIN}, {SHA256-CRYPT}, {SHA512-CRYPT}, {BLF-CRYPT}, {CRAM-MD5},
// {SCRAM-SHA-256} and {ARGON2ID}. It trusts
// nothing it is given: a stored value that does not parse is an error, and
// comparisons take constant time.
package scheme

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The scheme names, as Dovecot spells them.
const (
	Plain       = "PLAIN"
	SHA256Crypt = "SHA256-CRYPT"
	SHA512Crypt = "SHA512-CRYPT"
	BLFCrypt    = "BLF-CRYPT"
)

// Names lists the schemes this package knows.
func Names() []string {
	return []string{Plain, SHA256Crypt, SHA512Crypt, BLFCrypt, CRAMMD5, SCRAMSHA256, ARGON2ID}
}

// ErrUnknownScheme is returned for a scheme this package does not know.
var ErrUnknownScheme = errors.New("unknown password scheme")

// Stored is a password as stored in a user database.
type Stored struct {
	Scheme string
	Data   string
}

// Parse reads "{SCHEME}data". Scheme names are case-insensitive; the data
// is checked for the scheme's syntax.
func Parse(s string) (Stored, error) {
	if !strings.HasPrefix(s, "{") {
		return Stored{}, errors.New("password has no {SCHEME} prefix")
	}
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return Stored{}, errors.New("password has no closing '}' after its scheme")
	}
	st := Stored{Scheme: strings.ToUpper(s[1:end]), Data: s[end+1:]}
	switch st.Scheme {
	case Plain, "CLEARTEXT":
		st.Scheme = Plain
	case SHA256Crypt, SHA512Crypt:
		v := variant(st.Scheme)
		if _, _, _, sum, err := v.parse(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", st.Scheme, err)
		} else if len(sum) != map[string]int{SHA256Crypt: 43, SHA512Crypt: 86}[st.Scheme] {
			return Stored{}, fmt.Errorf("{%s}: hash has %d characters", st.Scheme, len(sum))
		}
	case BLFCrypt:
		if _, err := bcrypt.Cost([]byte(st.Data)); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", st.Scheme, err)
		}
	case CRAMMD5:
		if _, err := parseCRAMContext(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", st.Scheme, err)
		}
	case SCRAMSHA256:
		if _, err := parseSCRAM(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", st.Scheme, err)
		}
	case ARGON2ID:
		if _, err := parseArgon2(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", st.Scheme, err)
		}
	default:
		return Stored{}, fmt.Errorf("{%s}: %w", st.Scheme, ErrUnknownScheme)
	}
	return st, nil
}

func variant(name string) shaVariant {
	if name == SHA256Crypt {
		return sha256Crypt
	}
	return sha512Crypt
}

// String returns the stored form "{SCHEME}data".
func (s Stored) String() string { return "{" + s.Scheme + "}" + s.Data }

// Verify reports whether password matches.
func (s Stored) Verify(password []byte) bool {
	switch s.Scheme {
	case Plain:
		return subtle.ConstantTimeCompare([]byte(s.Data), password) == 1
	case SHA256Crypt, SHA512Crypt:
		v := variant(s.Scheme)
		rounds, explicit, salt, sum, err := v.parse(s.Data)
		if err != nil {
			return false
		}
		got := v.crypt(password, salt, rounds, explicit)
		return subtle.ConstantTimeCompare([]byte(got[strings.LastIndexByte(got, '$')+1:]), []byte(sum)) == 1
	case BLFCrypt:
		return bcrypt.CompareHashAndPassword([]byte(s.Data), password) == nil
	case CRAMMD5:
		c, err := parseCRAMContext(s.Data)
		return err == nil && subtle.ConstantTimeCompare([]byte(newCRAMContext(password).encode()), []byte(c.encode())) == 1
	case SCRAMSHA256:
		sec, err := parseSCRAM(s.Data)
		return err == nil && sec.verify(password)
	case ARGON2ID:
		a, err := parseArgon2(s.Data)
		return err == nil && a.verify(password)
	}
	return false
}

// Hash stores password with the named scheme and a fresh random salt, as
// `doveadm pw -s SCHEME` does.
func Hash(schemeName string, password []byte) (Stored, error) {
	name := strings.ToUpper(schemeName)
	switch name {
	case Plain:
		return Stored{Scheme: Plain, Data: string(password)}, nil
	case SHA256Crypt, SHA512Crypt:
		salt := make([]byte, shaCryptMaxSalt)
		if _, err := rand.Read(salt); err != nil {
			return Stored{}, fmt.Errorf("salt: %w", err)
		}
		for i := range salt {
			salt[i] = cryptAlphabet[int(salt[i])%len(cryptAlphabet)]
		}
		return Stored{Scheme: name, Data: variant(name).crypt(password, string(salt), shaCryptDefaultRounds, false)}, nil
	case BLFCrypt:
		h, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
		if err != nil {
			return Stored{}, fmt.Errorf("bcrypt: %w", err)
		}
		// Dovecot writes the $2y$ prefix; the algorithm is the same.
		return Stored{Scheme: BLFCrypt, Data: "$2y$" + string(h[4:])}, nil
	case CRAMMD5:
		return Stored{Scheme: CRAMMD5, Data: newCRAMContext(password).encode()}, nil
	case SCRAMSHA256:
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return Stored{}, fmt.Errorf("salt: %w", err)
		}
		const iterations = 4096 // Dovecot's default
		stored, server := scramKeys(password, salt, iterations)
		enc := base64.StdEncoding.EncodeToString
		return Stored{Scheme: SCRAMSHA256, Data: fmt.Sprintf("%d,%s,%s,%s", iterations, enc(salt), enc(stored), enc(server))}, nil
	case ARGON2ID:
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return Stored{}, fmt.Errorf("salt: %w", err)
		}
		// Dovecot's defaults: 64 MiB, 3 passes, 1 lane, 32-byte hash.
		h := argon2.IDKey(password, salt, 3, 64*1024, 1, 32)
		enc := base64.RawStdEncoding.EncodeToString
		return Stored{Scheme: ARGON2ID, Data: fmt.Sprintf("$argon2id$v=19$m=65536,t=3,p=1$%s$%s", enc(salt), enc(h))}, nil
	}
	return Stored{}, fmt.Errorf("{%s}: %w", name, ErrUnknownScheme)
}
