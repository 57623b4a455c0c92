// Package scheme verifies and makes passwords stored in Dovecot's
// "{SCHEME}data" form (https://doc.dovecot.org/configuration_manual/authentication/password_schemes/):
// {PLAIN}, {SHA256-CRYPT}, {SHA512-CRYPT}, {BLF-CRYPT}, {MD5-CRYPT}, {PBKDF2},
// {SHA}, {SHA256}, {SHA512}, {SSHA}, {SSHA256}, {SSHA512}, {SMD5}, {PLAIN-MD5},
// {LDAP-MD5}, {CRAM-MD5}, {SCRAM-SHA-256}, {SCRAM-SHA-1}, {ARGON2ID} and
// {ARGON2I}, with Dovecot's encoding
// suffixes (.HEX, .B64, .BASE64) and aliases. It trusts
// nothing it is given: a stored value that does not parse is an error, and
// comparisons take constant time.
package scheme

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
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

// Names lists the schemes Hash makes.
func Names() []string {
	return []string{Plain, SHA256Crypt, SHA512Crypt, BLFCrypt, CRAMMD5, SCRAMSHA256, ARGON2ID,
		PBKDF2, SSHA, SSHA256, SSHA512, SHA, SHA256, SHA512}
}

// VerifyOnly lists the schemes Parse and Verify know but Hash does not
// make: Dovecot 2.4's weak schemes, and two superseded by the ones Hash
// makes (SCRAM-SHA-256, ARGON2ID).
func VerifyOnly() []string {
	return []string{MD5Crypt, SMD5, PlainMD5, LDAPMD5, SCRAMSHA1, ARGON2I}
}

// ErrUnknownScheme is returned for a scheme this package does not know.
var ErrUnknownScheme = errors.New("unknown password scheme")

// Stored is a password as stored in a user database.
type Stored struct {
	Scheme string
	Data   string
}

// Parse reads "{SCHEME}data" as Dovecot does: scheme names are
// case-insensitive and may carry an encoding suffix (".HEX", ".B64",
// ".BASE64"); a bare crypt(3) string ("$1$", "$5$", "$6$", "$2y$") is
// Dovecot's passwd-file default scheme, CRYPT. The data is checked for the
// scheme's syntax and kept in the scheme's default encoding, aliases under
// one name (CLEAR and CLEARTEXT are PLAIN, SHA1 is SHA, HMAC-MD5 is
// CRAM-MD5, CRYPT and MD5 the crypt scheme or digest their data is).
func Parse(s string) (Stored, error) {
	if !strings.HasPrefix(s, "{") {
		if cryptScheme(s) == "" {
			return Stored{}, errors.New("password has no {SCHEME} prefix and is not a crypt(3) hash smtpgate knows ($1$, $5$, $6$, $2y$)")
		}
		if strings.HasPrefix(s, md5CryptPrefix) {
			// Dovecot's password_get_scheme: "$1$salt$hash[$ignored]".
			if i := strings.IndexByte(s[len(md5CryptPrefix):], '$'); i >= 0 {
				if j := strings.IndexByte(s[len(md5CryptPrefix)+i+1:], '$'); j >= 0 {
					s = s[:len(md5CryptPrefix)+i+1+j]
				}
			}
		}
		s = "{CRYPT}" + s
	}
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return Stored{}, errors.New("password has no closing '}' after its scheme")
	}
	written := strings.ToUpper(s[1:end])
	name, enc, explicit, err := splitEncoding(written)
	if err != nil {
		return Stored{}, err
	}
	data := s[end+1:]
	switch name {
	case "CLEARTEXT", "CLEAR":
		name = Plain
	case "SHA1":
		name = SHA
	case "HMAC-MD5":
		name = CRAMMD5
	case "CRYPT", "MD5":
		raw, err := decode(name, enc, explicit, data)
		if err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
		data, enc, explicit = string(raw), encNone, false
		if name = cryptScheme(data); name == "" && written == "MD5" {
			name = PlainMD5 // Dovecot's {MD5}: MD5-CRYPT, else PLAIN-MD5
		} else if name == "" {
			return Stored{}, fmt.Errorf("{%s}: not a crypt(3) hash smtpgate knows ($1$, $5$, $6$, $2y$; DES crypt is not supported)", written)
		}
	}
	raw, err := decode(name, enc, explicit, data)
	if err != nil {
		return Stored{}, fmt.Errorf("{%s}: %w", written, err)
	}
	st := Stored{Scheme: name, Data: canonical(name, raw)}
	if d, ok := digestSchemes[st.Scheme]; ok {
		if err := checkDigest(d, raw); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
		return st, nil
	}
	switch st.Scheme {
	case Plain:
	case SHA256Crypt, SHA512Crypt:
		v := variant(st.Scheme)
		if _, _, _, sum, err := v.parse(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		} else if len(sum) != map[string]int{SHA256Crypt: 43, SHA512Crypt: 86}[st.Scheme] {
			return Stored{}, fmt.Errorf("{%s}: hash has %d characters", written, len(sum))
		}
	case BLFCrypt:
		if _, err := bcrypt.Cost([]byte(st.Data)); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	case MD5Crypt:
		if _, _, err := parseMD5Crypt(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	case PBKDF2:
		if _, err := parsePBKDF2(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	case CRAMMD5:
		if _, err := parseCRAMContext(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	case SCRAMSHA256:
		if _, err := parseSCRAM(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	case ARGON2ID:
		if _, err := parseArgon2(st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	case ARGON2I:
		if _, err := parseArgon2Variant("argon2i", st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	case SCRAMSHA1:
		if _, err := parseSCRAMHash(sha1.New, st.Data); err != nil {
			return Stored{}, fmt.Errorf("{%s}: %w", written, err)
		}
	default:
		return Stored{}, fmt.Errorf("{%s}: %w", written, ErrUnknownScheme)
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
	if d, ok := digestSchemes[s.Scheme]; ok {
		raw, err := decode(s.Scheme, encNone, false, s.Data)
		return err == nil && verifyDigest(d, raw, password)
	}
	switch s.Scheme {
	case Plain:
		return subtle.ConstantTimeCompare([]byte(s.Data), password) == 1
	case SHA256Crypt, SHA512Crypt:
		v := variant(s.Scheme)
		rounds, explicit, salt, _, err := v.parse(s.Data)
		if err != nil {
			return false
		}
		// The whole string, as Dovecot compares what crypt(3) returns: a
		// salt longer than 16 or rounds out of range never match.
		return subtle.ConstantTimeCompare([]byte(v.crypt(password, salt, rounds, explicit)), []byte(s.Data)) == 1
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
	case ARGON2I:
		a, err := parseArgon2Variant("argon2i", s.Data)
		return err == nil && a.verify(password)
	case SCRAMSHA1:
		sec, err := parseSCRAMHash(sha1.New, s.Data)
		return err == nil && sec.verify(password)
	case MD5Crypt:
		return verifyMD5Crypt(s.Data, password)
	case PBKDF2:
		p, err := parsePBKDF2(s.Data)
		return err == nil && p.verify(password)
	}
	return false
}

// Hash stores password with the named scheme and a fresh random salt, as
// `doveadm pw -s SCHEME` does.
func Hash(schemeName string, password []byte) (Stored, error) {
	name := strings.ToUpper(schemeName)
	switch name {
	case "SHA1":
		name = SHA
	case "CLEAR", "CLEARTEXT":
		name = Plain
	}
	if d, ok := digestSchemes[name]; ok && !d.weak {
		return hashDigest(name, d, password)
	}
	switch name {
	case PBKDF2:
		salt, err := cryptSalt(pbkdf2SaltLen)
		if err != nil {
			return Stored{}, err
		}
		key, err := pbkdf2.Key(sha1.New, string(password), []byte(salt), pbkdf2DefaultRounds, pbkdf2KeyLen)
		if err != nil {
			return Stored{}, fmt.Errorf("pbkdf2: %w", err)
		}
		return Stored{Scheme: PBKDF2, Data: fmt.Sprintf("$1$%s$%d$%x", salt, pbkdf2DefaultRounds, key)}, nil
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
	if name == SCRAMSHA1 || name == ARGON2I {
		return Stored{}, fmt.Errorf("{%s}: smtpgate verifies it but does not make it; use %s", name, map[string]string{SCRAMSHA1: SCRAMSHA256, ARGON2I: ARGON2ID}[name])
	}
	if isWeak(name) {
		return Stored{}, fmt.Errorf("{%s}: a weak scheme (Dovecot 2.4 refuses it without auth_allow_weak_schemes); smtpgate verifies it but does not make it", name)
	}
	return Stored{}, fmt.Errorf("{%s}: %w", name, ErrUnknownScheme)
}

// isWeak reports the schemes Dovecot 2.4 calls weak.
func isWeak(name string) bool {
	if d, ok := digestSchemes[name]; ok {
		return d.weak
	}
	return name == MD5Crypt || name == "MD5" || name == "HMAC-MD5"
}
