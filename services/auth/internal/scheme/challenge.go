package scheme

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// The schemes that store more than a one-way hash of the password.
const (
	// CRAMMD5 stores the HMAC-MD5 inner and outer states keyed with the
	// password (RFC 2195), as Dovecot's {CRAM-MD5}: 32 bytes, hex.
	CRAMMD5 = "CRAM-MD5"
	// SCRAMSHA256 stores "iterations,salt,StoredKey,ServerKey" (RFC 7677,
	// RFC 5802 §3), base64, as Dovecot's {SCRAM-SHA-256}.
	SCRAMSHA256 = "SCRAM-SHA-256"
	// ARGON2ID stores a PHC-format Argon2id hash (RFC 9106).
	ARGON2ID = "ARGON2ID"
	// SCRAMSHA1 is SCRAMSHA256 with SHA-1 (RFC 5802), Dovecot's
	// {SCRAM-SHA-1}; verified, and it serves SCRAM-SHA-1, but not made.
	SCRAMSHA1 = "SCRAM-SHA-1"
	// ARGON2I stores a PHC-format Argon2i hash, Dovecot's {ARGON2I};
	// verified, not made.
	ARGON2I = "ARGON2I"
)

// cramContext is the HMAC-MD5 key schedule of a password: the MD5 states
// after the outer and the inner padded key block.
type cramContext struct {
	outer, inner [4]uint32
}

// md5State returns the MD5 chaining value after one 64-byte block.
func md5State(block []byte) [4]uint32 {
	h := md5.New()
	h.Write(block)
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	// Layout of crypto/md5's state: "md5\x01", four big-endian words, ...
	var s [4]uint32
	for i := range s {
		s[i] = binary.BigEndian.Uint32(b[4+4*i:])
	}
	return s
}

func newCRAMContext(password []byte) cramContext {
	key := password
	if len(key) > 64 {
		sum := md5.Sum(key)
		key = sum[:]
	}
	var ipad, opad [64]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	return cramContext{outer: md5State(opad[:]), inner: md5State(ipad[:])}
}

// encode writes the context as Dovecot does: outer then inner words,
// little-endian.
func (c cramContext) encode() string {
	var b [32]byte
	for i, w := range append(c.outer[:], c.inner[:]...) {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	return hex.EncodeToString(b[:])
}

func parseCRAMContext(s string) (cramContext, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return cramContext{}, errors.New("want 64 hex digits")
	}
	var c cramContext
	for i := range 4 {
		c.outer[i] = binary.LittleEndian.Uint32(b[4*i:])
		c.inner[i] = binary.LittleEndian.Uint32(b[16+4*i:])
	}
	return c, nil
}

// resume returns an MD5 hash that continues from state after one block.
func resume(state [4]uint32) hash.Hash {
	b := make([]byte, 0, 4+16+64+8)
	b = append(b, "md5\x01"...)
	for _, w := range state {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	b = append(b, make([]byte, 64)...)
	b = binary.BigEndian.AppendUint64(b, 64)
	h := md5.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		panic("scheme: crypto/md5 state layout changed: " + err.Error())
	}
	return h
}

// HMAC computes HMAC-MD5(password, msg) from the stored context; it is
// what CRAM-MD5 compares with the client's digest (RFC 2195 §2).
func (c cramContext) HMAC(msg []byte) []byte {
	in := resume(c.inner)
	in.Write(msg)
	out := resume(c.outer)
	out.Write(in.Sum(nil))
	return out.Sum(nil)
}

// scramSecret is what a SCRAM server stores (RFC 5802 §3).
type scramSecret struct {
	hash                 func() hash.Hash
	iterations           int
	salt                 []byte
	storedKey, serverKey []byte
}

// parseSCRAM reads {SCRAM-SHA-256} data.
func parseSCRAM(s string) (scramSecret, error) { return parseSCRAMHash(sha256.New, s) }

// parseSCRAMHash reads "iterations,salt,StoredKey,ServerKey" with keys of
// h's size.
func parseSCRAMHash(h func() hash.Hash, s string) (scramSecret, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return scramSecret{}, errors.New("want iterations,salt,StoredKey,ServerKey")
	}
	n, err := strconv.Atoi(parts[0])
	if err != nil || n < 1 || n > 10_000_000 {
		return scramSecret{}, fmt.Errorf("bad iteration count %q", parts[0])
	}
	sec := scramSecret{hash: h, iterations: n}
	for i, dst := range []*[]byte{&sec.salt, &sec.storedKey, &sec.serverKey} {
		b, err := base64.StdEncoding.DecodeString(parts[i+1])
		if err != nil || len(b) == 0 || (i > 0 && len(b) != h().Size()) {
			return scramSecret{}, fmt.Errorf("bad base64 field %d", i+2)
		}
		*dst = b
	}
	return sec, nil
}

// scramKeys derives StoredKey and ServerKey from a password (RFC 5802 §3).
func scramKeys(password, salt []byte, iterations int) (storedKey, serverKey []byte) {
	return scramKeysHash(sha256.New, password, salt, iterations)
}

// scramKeysHash is RFC 5802 §3's StoredKey and ServerKey with the hash h.
func scramKeysHash(h func() hash.Hash, password, salt []byte, iterations int) (storedKey, serverKey []byte) {
	salted, err := pbkdf2.Key(h, string(password), salt, iterations, h().Size())
	if err != nil {
		return nil, nil
	}
	mac := func(key []byte, s string) []byte {
		m := hmac.New(h, key)
		m.Write([]byte(s))
		return m.Sum(nil)
	}
	d := h()
	d.Write(mac(salted, "Client Key"))
	return d.Sum(nil), mac(salted, "Server Key")
}

func (s scramSecret) verify(password []byte) bool {
	stored, _ := scramKeysHash(s.hash, password, s.salt, s.iterations)
	return subtle.ConstantTimeCompare(stored, s.storedKey) == 1
}

// argon2Hash is a parsed "$argon2id$v=19$m=M,t=T,p=P$salt$hash" (or
// $argon2i$).
type argon2Hash struct {
	id         bool // Argon2id; else Argon2i
	memory     uint32
	time       uint32
	threads    uint8
	salt, hash []byte
}

// parseArgon2 reads {ARGON2ID} data.
func parseArgon2(s string) (argon2Hash, error) { return parseArgon2Variant("argon2id", s) }

// parseArgon2Variant reads "$VARIANT$v=19$m=…,t=…,p=…$salt$hash".
func parseArgon2Variant(variant, s string) (argon2Hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != variant || parts[2] != "v=19" {
		return argon2Hash{}, fmt.Errorf("want $%s$v=19$m=…,t=…,p=…$salt$hash", variant)
	}
	a := argon2Hash{id: variant == "argon2id"}
	var p uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &a.memory, &a.time, &p); err != nil || p == 0 || p > 255 || a.time == 0 || a.memory < 8*p || a.memory > 4<<20 {
		return argon2Hash{}, fmt.Errorf("bad parameters %q", parts[3])
	}
	a.threads = uint8(p)
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return argon2Hash{}, errors.New("bad salt")
	}
	if a.hash, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.hash) < 16 || len(a.hash) > 64 {
		return argon2Hash{}, errors.New("bad hash")
	}
	return a, nil
}

func (a argon2Hash) verify(password []byte) bool {
	key := argon2.Key
	if a.id {
		key = argon2.IDKey
	}
	got := key(password, a.salt, a.time, a.memory, a.threads, uint32(len(a.hash)))
	return subtle.ConstantTimeCompare(got, a.hash) == 1
}

// CRAMMD5Digest returns HMAC-MD5(password, challenge) for a user stored as
// {PLAIN} or {CRAM-MD5}; ok is false when the stored form cannot serve
// CRAM-MD5 (a one-way hash of another kind).
func (s Stored) CRAMMD5Digest(challenge []byte) (digest []byte, ok bool) {
	switch s.Scheme {
	case Plain:
		return newCRAMContext([]byte(s.Data)).HMAC(challenge), true
	case CRAMMD5:
		c, err := parseCRAMContext(s.Data)
		if err != nil {
			return nil, false
		}
		return c.HMAC(challenge), true
	}
	return nil, false
}

// SCRAMSHA1Credentials returns the SCRAM-SHA-1 secrets of a user stored
// as {SCRAM-SHA-1}, or derived from a {PLAIN} password with the given
// salt; ok is false for every other stored form (SCRAM-SHA-1 is kept for
// old clients and is off by default).
func (s Stored) SCRAMSHA1Credentials(plainSalt []byte) (salt []byte, iterations int, storedKey, serverKey []byte, ok bool) {
	if s.Scheme == SCRAMSHA1 {
		sec, err := parseSCRAMHash(sha1.New, s.Data)
		if err != nil {
			return nil, 0, nil, nil, false
		}
		return sec.salt, sec.iterations, sec.storedKey, sec.serverKey, true
	}
	if s.Scheme != Plain {
		return nil, 0, nil, nil, false
	}
	const n = 4096
	stored, server := scramKeysHash(sha1.New, []byte(s.Data), plainSalt, n)
	return plainSalt, n, stored, server, true
}

// SCRAMCredentials returns the SCRAM-SHA-256 secrets of a user stored as
// {SCRAM-SHA-256}, or derived from a {PLAIN} password with the given salt;
// ok is false for other stored forms.
func (s Stored) SCRAMCredentials(plainSalt []byte) (salt []byte, iterations int, storedKey, serverKey []byte, ok bool) {
	switch s.Scheme {
	case SCRAMSHA256:
		sec, err := parseSCRAM(s.Data)
		if err != nil {
			return nil, 0, nil, nil, false
		}
		return sec.salt, sec.iterations, sec.storedKey, sec.serverKey, true
	case Plain:
		const iterations = 4096
		stored, server := scramKeys([]byte(s.Data), plainSalt, iterations)
		return plainSalt, iterations, stored, server, true
	}
	return nil, 0, nil, nil, false
}
