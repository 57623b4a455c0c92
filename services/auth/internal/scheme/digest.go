package scheme

import (
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/go-crypt/x/crypt"
)

// The digest schemes of Dovecot's password-scheme.c, the salted ones, and
// the crypt-style MD5-CRYPT and PBKDF2.
const (
	SHA       = "SHA" // SHA-1; Dovecot's "SHA1" is the same scheme
	SHA256    = "SHA256"
	SHA512    = "SHA512"
	SSHA      = "SSHA"
	SSHA256   = "SSHA256"
	SSHA512   = "SSHA512"
	SMD5      = "SMD5"
	PlainMD5  = "PLAIN-MD5"
	LDAPMD5   = "LDAP-MD5"
	MD5Crypt  = "MD5-CRYPT"
	PBKDF2    = "PBKDF2"
	saltBytes = 16 // what Hash gives the salted digests (Dovecot: 4)
)

// dataEncoding is how a scheme's binary hash is written after "{SCHEME}".
type dataEncoding int

const (
	encNone dataEncoding = iota // the data is text (crypt strings, PLAIN)
	encBase64
	encHex
)

// digestScheme is a scheme whose stored data is a binary hash, possibly
// followed by a salt: H(password || salt) || salt.
type digestScheme struct {
	newHash func() hash.Hash
	enc     dataEncoding // Dovecot's default_encoding
	rawLen  int          // Dovecot's raw_password_len: the exact decoded size; 0 when salted
	salted  bool
	// weak marks what Dovecot 2.4 refuses without auth_allow_weak_schemes:
	// smtpgate verifies it (Dovecot 2.3 does) but Hash does not make it.
	weak bool
}

var digestSchemes = map[string]digestScheme{
	SHA:      {newHash: sha1.New, enc: encBase64, rawLen: sha1.Size},
	SHA256:   {newHash: sha256.New, enc: encBase64, rawLen: sha256.Size},
	SHA512:   {newHash: sha512.New, enc: encBase64, rawLen: sha512.Size},
	SSHA:     {newHash: sha1.New, enc: encBase64, salted: true},
	SSHA256:  {newHash: sha256.New, enc: encBase64, salted: true},
	SSHA512:  {newHash: sha512.New, enc: encBase64, salted: true},
	SMD5:     {newHash: md5.New, enc: encBase64, salted: true, weak: true},
	PlainMD5: {newHash: md5.New, enc: encHex, rawLen: md5.Size, weak: true},
	LDAPMD5:  {newHash: md5.New, enc: encBase64, rawLen: md5.Size, weak: true},
}

// defaultEncoding returns the encoding Dovecot assumes for a scheme
// written without a suffix, and the decoded size it requires (0: any).
func defaultEncoding(name string) (dataEncoding, int) {
	if d, ok := digestSchemes[name]; ok {
		return d.enc, d.rawLen
	}
	if name == CRAMMD5 {
		return encHex, 32
	}
	return encNone, 0
}

// splitEncoding splits "SHA256.HEX" into the scheme and its encoding
// suffix, as Dovecot's password_scheme_lookup: ".b64", ".base64" or
// ".hex" (any case); explicit is false without a suffix.
func splitEncoding(name string) (base string, enc dataEncoding, explicit bool, err error) {
	base, suffix, found := strings.Cut(name, ".")
	if !found {
		return name, encNone, false, nil
	}
	switch strings.ToLower(suffix) {
	case "b64", "base64":
		return base, encBase64, true, nil
	case "hex":
		return base, encHex, true, nil
	}
	return "", encNone, false, fmt.Errorf("{%s}: unknown encoding %q (want .HEX, .B64 or .BASE64): %w", name, suffix, ErrUnknownScheme)
}

// decodeBase64 is Dovecot's lenient base64: padding may be left out.
func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// decode turns the data of "{SCHEME[.ENC]}data" into the scheme's raw
// form, following Dovecot's password_decode: without a suffix a scheme
// of fixed size is read as hex when the data is exactly twice that long,
// else as base64.
func decode(base string, enc dataEncoding, explicit bool, data string) ([]byte, error) {
	def, rawLen := defaultEncoding(base)
	if !explicit {
		enc = def
	}
	guessed := !explicit && enc != encNone && rawLen != 0
	if guessed && len(data) == 2*rawLen {
		enc = encHex
	} else if guessed {
		enc = encBase64
	}
	var raw []byte
	switch enc {
	case encNone:
		raw = []byte(data)
	case encHex:
		b, err := hex.DecodeString(data)
		if err == nil {
			raw = b
			break
		}
		if !guessed {
			return nil, errors.New("data is not valid hex")
		}
		// Some lengths are both hex and base64; Dovecot then tries base64.
		fallthrough
	case encBase64:
		b, err := decodeBase64(data)
		if err != nil {
			return nil, errors.New("data is not valid base64")
		}
		raw = b
	}
	if rawLen != 0 && len(raw) != rawLen {
		return nil, fmt.Errorf("hash is %d bytes, want %d", len(raw), rawLen)
	}
	return raw, nil
}

// canonical writes raw in the scheme's default encoding, the form Parse
// keeps.
func canonical(base string, raw []byte) string {
	switch enc, _ := defaultEncoding(base); enc {
	case encBase64:
		return base64.StdEncoding.EncodeToString(raw)
	case encHex:
		return hex.EncodeToString(raw)
	}
	return string(raw)
}

// checkDigest checks the decoded data of a digest scheme.
func checkDigest(d digestScheme, raw []byte) error {
	if size := d.newHash().Size(); d.salted && len(raw) <= size {
		return fmt.Errorf("hash is %d bytes, want more than %d (hash, then salt)", len(raw), size)
	}
	return nil
}

// verifyDigest reports whether password matches the decoded data.
func verifyDigest(d digestScheme, raw, password []byte) bool {
	h := d.newHash()
	size := h.Size()
	if d.salted && len(raw) <= size || !d.salted && len(raw) != size {
		return false
	}
	h.Write(password)
	h.Write(raw[size:]) // the salt; nothing for an unsalted digest
	return subtle.ConstantTimeCompare(h.Sum(nil), raw[:size]) == 1
}

// hashDigest stores password in a digest scheme, the salted ones with
// saltBytes random bytes.
func hashDigest(name string, d digestScheme, password []byte) (Stored, error) {
	var salt []byte
	if d.salted {
		salt = make([]byte, saltBytes)
		if _, err := rand.Read(salt); err != nil {
			return Stored{}, fmt.Errorf("salt: %w", err)
		}
	}
	h := d.newHash()
	h.Write(password)
	h.Write(salt)
	return Stored{Scheme: name, Data: canonical(name, append(h.Sum(nil), salt...))}, nil
}

// MD5-CRYPT: "$1$salt$hash", salt at most 8 characters (Dovecot's
// password-scheme-md5crypt.c, Poul-Henning Kamp's md5crypt). The hash is
// computed by github.com/go-crypt/x/crypt.

const (
	md5CryptPrefix  = "$1$"
	md5CryptMaxSalt = 8
	md5CryptHashLen = 22
)

// parseMD5Crypt splits "$1$salt$hash". Dovecot compares the whole string
// it computes, which has at most 8 salt characters, so a longer salt
// could never match and is refused here.
func parseMD5Crypt(s string) (salt, sum string, err error) {
	rest, ok := strings.CutPrefix(s, md5CryptPrefix)
	if !ok {
		return "", "", fmt.Errorf("want a hash starting with %s", md5CryptPrefix)
	}
	salt, sum, found := strings.Cut(rest, "$")
	switch {
	case !found:
		return "", "", errors.New("no '$' after the salt")
	case len(salt) > md5CryptMaxSalt:
		return "", "", fmt.Errorf("salt has %d characters, at most %d", len(salt), md5CryptMaxSalt)
	case len(sum) != md5CryptHashLen || strings.Trim(sum, cryptAlphabet) != "":
		return "", "", fmt.Errorf("hash is not %d characters of [./0-9A-Za-z]", md5CryptHashLen)
	}
	return salt, sum, nil
}

func verifyMD5Crypt(data string, password []byte) bool {
	salt, sum, err := parseMD5Crypt(data)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(crypt.KeyMD5Crypt(password, []byte(salt)), []byte(sum)) == 1
}

// PBKDF2: "$1$salt$rounds$hex", PBKDF2-HMAC-SHA1 with the salt's text as
// salt and a 20-byte key (Dovecot's password-scheme-pbkdf2.c).

const (
	pbkdf2KeyLen        = sha1.Size
	pbkdf2DefaultRounds = 5000 // Dovecot's
	pbkdf2SaltLen       = 16   // Dovecot's
)

type pbkdf2Hash struct {
	salt   string
	rounds int
	key    []byte
}

func parsePBKDF2(s string) (pbkdf2Hash, error) {
	rest, ok := strings.CutPrefix(s, "$1$")
	if !ok {
		return pbkdf2Hash{}, errors.New("want $1$salt$rounds$hash")
	}
	f := strings.Split(rest, "$")
	if len(f) != 3 {
		return pbkdf2Hash{}, errors.New("want $1$salt$rounds$hash")
	}
	rounds, err := strconv.ParseUint(f[1], 10, 32)
	if err != nil || rounds == 0 {
		return pbkdf2Hash{}, fmt.Errorf("bad rounds %q", f[1])
	}
	key, err := hex.DecodeString(f[2])
	if err != nil || len(key) != pbkdf2KeyLen {
		return pbkdf2Hash{}, errors.New("hash is not 40 hex digits")
	}
	return pbkdf2Hash{salt: f[0], rounds: int(rounds), key: key}, nil
}

func (p pbkdf2Hash) verify(password []byte) bool {
	got, err := pbkdf2.Key(sha1.New, string(password), []byte(p.salt), p.rounds, pbkdf2KeyLen)
	return err == nil && subtle.ConstantTimeCompare(got, p.key) == 1
}

// cryptSalt returns n random characters of the crypt alphabet.
func cryptSalt(n int) (string, error) {
	salt := make([]byte, n)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	for i := range salt {
		salt[i] = cryptAlphabet[int(salt[i])%len(cryptAlphabet)]
	}
	return string(salt), nil
}

// cryptScheme names the scheme of a bare crypt(3) string, the form a
// passwd-file line without "{SCHEME}" holds (Dovecot's passwd-file
// default_pass_scheme is CRYPT); "" when it is none smtpgate knows.
func cryptScheme(s string) string {
	switch {
	case strings.HasPrefix(s, md5CryptPrefix):
		return MD5Crypt
	case strings.HasPrefix(s, "$5$"):
		return SHA256Crypt
	case strings.HasPrefix(s, "$6$"):
		return SHA512Crypt
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return BLFCrypt
	}
	return ""
}
