package sasl

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

type users map[string]string

func (u users) Verify(_ context.Context, user string, password []byte) (bool, error) {
	if user == "broken" {
		return false, errors.New("database down")
	}
	pw, ok := u[user]
	return ok && pw == string(password), nil
}

func (u users) CRAMMD5(_ context.Context, user string, challenge []byte) ([]byte, bool, error) {
	if user == "broken" {
		return nil, false, errors.New("database down")
	}
	pw, ok := u[user]
	if !ok {
		return nil, false, nil
	}
	m := hmac.New(md5.New, []byte(pw))
	m.Write(challenge)
	return m.Sum(nil), true, nil
}

// SCRAM serves every known user as if stored {PLAIN}, with a fixed salt;
// unknown users get fake credentials.
func (u users) SCRAM(_ context.Context, hash, user string) (scram.StoredCredentials, bool, error) {
	pw, ok := u[user]
	kf := scram.KeyFactors{Salt: "fixed-test-salt!", Iters: 4096}
	h, size := scram.SHA256, 32
	if hash == "SHA-1" {
		h, size = scram.SHA1, 20
	}
	if !ok {
		return scram.StoredCredentials{KeyFactors: kf, StoredKey: make([]byte, size), ServerKey: make([]byte, size)}, false, nil
	}
	c, err := h.NewClient(user, pw, "")
	if err != nil {
		return scram.StoredCredentials{}, false, err
	}
	cred, err := c.GetStoredCredentialsWithError(kf)
	return cred, err == nil, err
}

var db = users{"john@example.org": "secret"}

// run drives an exchange with the given client responses (nil first entry
// means no initial response) and returns the challenges seen and the end.
func run(t *testing.T, mech string, responses ...[]byte) (challenges []string, err error) {
	t.Helper()
	ex := Mechanisms()[mech].Start(db, "mail.example.org")
	for i, r := range responses {
		ch, done, err := ex.Next(context.Background(), r)
		if done {
			if i != len(responses)-1 {
				t.Fatalf("%s ended after %d of %d responses", mech, i+1, len(responses))
			}
			return challenges, err
		}
		challenges = append(challenges, string(ch))
	}
	t.Fatalf("%s did not end", mech)
	return nil, nil
}

func TestPlain(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp [][]byte
		want error
		ch   int
	}{
		{"initial response", [][]byte{[]byte("\x00john@example.org\x00secret")}, nil, 0},
		{"authzid equal", [][]byte{[]byte("john@example.org\x00john@example.org\x00secret")}, nil, 0},
		{"no initial response", [][]byte{nil, []byte("\x00john@example.org\x00secret")}, nil, 1},
		{"empty initial response", [][]byte{{}}, ErrMalformed, 0},
		{"wrong password", [][]byte{[]byte("\x00john@example.org\x00nope")}, ErrFailed, 0},
		{"unknown user", [][]byte{[]byte("\x00nobody@example.org\x00secret")}, ErrFailed, 0},
		{"other authzid", [][]byte{[]byte("admin\x00john@example.org\x00secret")}, ErrFailed, 0},
		{"two fields", [][]byte{[]byte("john@example.org\x00secret")}, ErrMalformed, 0},
		{"four fields", [][]byte{[]byte("\x00john@example.org\x00secret\x00x")}, ErrMalformed, 0},
		{"empty authcid", [][]byte{[]byte("\x00\x00secret")}, ErrMalformed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := run(t, "PLAIN", tc.resp...)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("end = %v, want %v", err, tc.want)
			}
			if len(ch) != tc.ch {
				t.Errorf("challenges = %q, want %d", ch, tc.ch)
			}
		})
	}
	_, err := run(t, "PLAIN", []byte("\x00broken\x00x"))
	if err == nil || errors.Is(err, ErrFailed) || errors.Is(err, ErrMalformed) {
		t.Errorf("verifier failure = %v, want a temporary error", err)
	}
}

func TestLogin(t *testing.T) {
	ch, err := run(t, "LOGIN", nil, []byte("john@example.org"), []byte("secret"))
	if err != nil || len(ch) != 2 || ch[0] != "Username:" || ch[1] != "Password:" {
		t.Errorf("LOGIN = %q, %v", ch, err)
	}
	ch, err = run(t, "LOGIN", []byte("john@example.org"), []byte("secret"))
	if err != nil || len(ch) != 1 || ch[0] != "Password:" {
		t.Errorf("LOGIN with initial response = %q, %v", ch, err)
	}
	if _, err := run(t, "LOGIN", nil, []byte("john@example.org"), []byte("bad")); !errors.Is(err, ErrFailed) {
		t.Errorf("wrong password = %v", err)
	}
	if _, err := run(t, "LOGIN", nil, []byte{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty user = %v", err)
	}
}

func TestCRAMMD5(t *testing.T) {
	ex := Mechanisms()["CRAM-MD5"].Start(db, "mail.example.org")
	ch, done, err := ex.Next(context.Background(), nil)
	if done || err != nil || !strings.HasPrefix(string(ch), "<") || !strings.HasSuffix(string(ch), "@mail.example.org>") {
		t.Fatalf("challenge = %q, %v, %v", ch, done, err)
	}
	answer := func(user, pw string) []byte {
		m := hmac.New(md5.New, []byte(pw))
		m.Write(ch)
		return []byte(user + " " + hex.EncodeToString(m.Sum(nil)))
	}
	if _, done, err := ex.Next(context.Background(), answer("john@example.org", "secret")); !done || err != nil {
		t.Errorf("right digest: %v %v", done, err)
	}
	for name, tc := range map[string]struct {
		resp []byte
		want error
	}{
		"wrong password": {answer("john@example.org", "nope"), ErrFailed},
		"unknown user":   {answer("nobody@example.org", "secret"), ErrFailed},
		"no digest":      {[]byte("john@example.org"), ErrMalformed},
		"short digest":   {[]byte("john@example.org abcd"), ErrMalformed},
		"not hex":        {[]byte("john@example.org " + strings.Repeat("z", 32)), ErrMalformed},
	} {
		ex := Mechanisms()["CRAM-MD5"].Start(db, "h")
		ch, _, _ = ex.Next(context.Background(), nil)
		if _, done, err := ex.Next(context.Background(), tc.resp); !done || !errors.Is(err, tc.want) {
			t.Errorf("%s: %v %v, want %v", name, done, err, tc.want)
		}
	}
	ex = Mechanisms()["CRAM-MD5"].Start(db, "h")
	if _, done, err := ex.Next(context.Background(), []byte("x")); !done || !errors.Is(err, ErrMalformed) {
		t.Errorf("initial response: %v %v", done, err)
	}
}

func FuzzCRAMMD5(f *testing.F) {
	f.Add([]byte("john@example.org 0123456789abcdef0123456789abcdef"))
	f.Add([]byte(" "))
	f.Fuzz(func(t *testing.T, resp []byte) {
		ex := Mechanisms()["CRAM-MD5"].Start(db, "h")
		if _, _, err := ex.Next(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if _, done, err := ex.Next(context.Background(), resp); !done || err == nil {
			t.Fatalf("CRAM-MD5 accepted %q without knowing the challenge", resp)
		}
	})
}

func TestSCRAMExchange(t *testing.T) {
	for _, tc := range []struct {
		user, pass string
		want       error
	}{
		{"john@example.org", "secret", nil},
		{"john@example.org", "wrong", ErrFailed},
		{"nobody@example.org", "secret", ErrFailed},
	} {
		client, _ := scram.SHA256.NewClient(tc.user, tc.pass, "")
		conv := client.NewConversation()
		ex := Mechanisms()["SCRAM-SHA-256"].Start(db, "h")
		msg, _ := conv.Step("")
		var err error
		for done := false; !done; {
			var ch []byte
			ch, done, err = ex.Next(context.Background(), []byte(msg))
			if done {
				break
			}
			msg, _ = conv.Step(string(ch))
		}
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s/%s: %v, want %v", tc.user, tc.pass, err, tc.want)
		}
		if tc.want == nil && !conv.Valid() {
			t.Errorf("%s: server signature not valid", tc.user)
		}
	}
}

// exchange runs a SCRAM client conversation against mech's exchange.
func exchange(t *testing.T, mech string, cb scram.ChannelBinding, conv *scram.ClientConversation) error {
	t.Helper()
	ex := Mechanisms()[mech].StartWith(db, Params{Hostname: "h", ChannelBinding: cb})
	msg, err := conv.Step("")
	if err != nil {
		t.Fatalf("client-first: %v", err)
	}
	for {
		ch, done, err := ex.Next(context.Background(), []byte(msg))
		if done {
			return err
		}
		if msg, err = conv.Step(string(ch)); err != nil {
			// The client refuses the server: answer with garbage so the
			// server ends the exchange.
			msg = "*"
		}
	}
}

// SCRAM-SHA-1 (RFC 5802) and the -PLUS variants with RFC 9266
// tls-exporter channel binding: the binding must match, a -PLUS exchange
// needs one, and a client that could bind cannot be talked into not
// binding (the "y" downgrade of RFC 5802 §6).
func TestSCRAMVariants(t *testing.T) {
	binding := scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: []byte("0123456789abcdef0123456789abcdef")}
	other := scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: []byte("fedcba9876543210fedcba9876543210")}
	client := func(h scram.HashGeneratorFcn, pass string) *scram.Client {
		c, err := h.NewClient("john@example.org", pass, "")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name      string
		mech      string
		serverCB  scram.ChannelBinding
		conv      *scram.ClientConversation
		wantError bool
	}{
		{"SHA-1", "SCRAM-SHA-1", scram.ChannelBinding{}, client(scram.SHA1, "secret").NewConversation(), false},
		{"SHA-1 wrong password", "SCRAM-SHA-1", scram.ChannelBinding{}, client(scram.SHA1, "nope").NewConversation(), true},
		{"SHA-256-PLUS", "SCRAM-SHA-256-PLUS", binding, client(scram.SHA256, "secret").NewConversationWithChannelBinding(binding), false},
		{"SHA-1-PLUS", "SCRAM-SHA-1-PLUS", binding, client(scram.SHA1, "secret").NewConversationWithChannelBinding(binding), false},
		{"PLUS with another channel", "SCRAM-SHA-256-PLUS", binding, client(scram.SHA256, "secret").NewConversationWithChannelBinding(other), true},
		{"PLUS without a channel binding", "SCRAM-SHA-256-PLUS", scram.ChannelBinding{}, client(scram.SHA256, "secret").NewConversationWithChannelBinding(binding), true},
		{"PLUS with a client that does not bind", "SCRAM-SHA-256-PLUS", binding, client(scram.SHA256, "secret").NewConversation(), true},
		{"plain SHA-256 on a bindable channel", "SCRAM-SHA-256", binding, client(scram.SHA256, "secret").NewConversation(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := exchange(t, tc.mech, tc.serverCB, tc.conv)
			if tc.wantError != (err != nil) {
				t.Fatalf("error %v, want error: %v", err, tc.wantError)
			}
			if !tc.wantError && !tc.conv.Valid() {
				t.Error("the client did not accept the server's signature")
			}
		})
	}
	// The downgrade: "y" says "I can bind, but I think you cannot". A
	// server that offers -PLUS must refuse it (RFC 5802 §6).
	ex := Mechanisms()["SCRAM-SHA-256"].StartWith(db, Params{ChannelBinding: binding})
	if _, done, err := ex.Next(context.Background(), []byte("y,,n=john@example.org,r=abcdefghijkl")); !done || err == nil {
		t.Errorf("a downgraded client-first was not refused: done %v, err %v", done, err)
	}
}

// FuzzSCRAM sends arbitrary client-first and client-final messages: the
// exchange must end without success unless the proof is right.
func FuzzSCRAM(f *testing.F) {
	f.Add([]byte("n,,n=john@example.org,r=abcdef"), []byte("c=biws,r=abcdef,p=AAAA"))
	f.Add([]byte("y,a=x,n=a,r=b"), []byte(""))
	f.Add([]byte("p=tls-exporter,,n=u,r=n"), []byte("c=x"))
	f.Fuzz(func(t *testing.T, first, final []byte) {
		ex := Mechanisms()["SCRAM-SHA-256"].Start(db, "h")
		_, done, err := ex.Next(context.Background(), first)
		if done {
			if err == nil {
				t.Fatal("SCRAM succeeded on client-first alone")
			}
			return
		}
		_, done, err = ex.Next(context.Background(), final)
		if !done || err == nil {
			t.Fatalf("SCRAM accepted a forged client-final %q", final)
		}
	})
}

func TestSecurityOptions(t *testing.T) {
	o, err := ParseSecurityOptions([]string{"noanonymous", "noplaintext"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Allows(Mechanisms()["PLAIN"]) || o.Allows(Mechanisms()["LOGIN"]) {
		t.Error("noplaintext allows a plaintext mechanism")
	}
	o, _ = ParseSecurityOptions([]string{"noanonymous"})
	if !o.Allows(Mechanisms()["PLAIN"]) {
		t.Error("noanonymous refuses PLAIN")
	}
	o, _ = ParseSecurityOptions([]string{"mutual_auth"})
	if o.Allows(Mechanisms()["PLAIN"]) {
		t.Error("mutual_auth allows PLAIN")
	}
	if _, err := ParseSecurityOptions([]string{"nosuch"}); err == nil {
		t.Error("unknown option accepted")
	}
}

func FuzzPlain(f *testing.F) {
	f.Add([]byte("\x00john@example.org\x00secret"))
	f.Add([]byte("a\x00b\x00c\x00d"))
	f.Fuzz(func(t *testing.T, resp []byte) {
		ex := Mechanisms()["PLAIN"].Start(db, "h")
		_, done, err := ex.Next(context.Background(), resp)
		if !done {
			t.Fatal("PLAIN with an initial response did not end")
		}
		if err == nil && string(resp) != "\x00john@example.org\x00secret" && string(resp) != "john@example.org\x00john@example.org\x00secret" {
			t.Fatalf("PLAIN accepted %q", resp)
		}
	})
}

func FuzzLogin(f *testing.F) {
	f.Add([]byte("john@example.org"), []byte("secret"))
	f.Fuzz(func(t *testing.T, user, pass []byte) {
		ex := Mechanisms()["LOGIN"].Start(db, "h")
		_, done, err := ex.Next(context.Background(), user)
		if done {
			if err == nil {
				t.Fatal("LOGIN ended successfully after the user name")
			}
			return
		}
		_, done, err = ex.Next(context.Background(), pass)
		if !done {
			t.Fatal("LOGIN did not end after the password")
		}
		if err == nil && (string(user) != "john@example.org" || string(pass) != "secret") {
			t.Fatalf("LOGIN accepted %q/%q", user, pass)
		}
	})
}

// rfcUser is the user of the RFC 5802 and RFC 7677 examples: "user" with
// the password "pencil" and the RFCs' salts.
type rfcUser struct{ users }

func (rfcUser) SCRAM(_ context.Context, hash, user string) (scram.StoredCredentials, bool, error) {
	h, salt := scram.SHA256, "W22ZaJ0SNY7soEsUEjb6gQ=="
	if hash == "SHA-1" {
		h, salt = scram.SHA1, "QSXCR+Q6sek8bf92"
	}
	raw, err := base64.StdEncoding.DecodeString(salt)
	if err != nil {
		return scram.StoredCredentials{}, false, err
	}
	c, err := h.NewClient(user, "pencil", "")
	if err != nil {
		return scram.StoredCredentials{}, false, err
	}
	cred, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(raw), Iters: 4096})
	return cred, err == nil && user == "user", err
}

// The exchanges of RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3
// (SCRAM-SHA-256), message for message, with the RFCs' server nonces.
func TestSCRAMRFCVectors(t *testing.T) {
	for _, tc := range []struct {
		mech, serverNonce        string
		clientFirst, serverFirst string
		clientFinal, serverFinal string
	}{
		{"SCRAM-SHA-1", "3rfcNHYJY1ZVvWVs7j",
			"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
			"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
			"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
			"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="},
		{"SCRAM-SHA-256", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
			"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
			"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
			"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="},
	} {
		t.Run(tc.mech, func(t *testing.T) {
			nonce := tc.serverNonce
			ex := Mechanisms()[tc.mech].StartWith(rfcUser{db}, Params{nonce: func() string { return nonce }})
			ctx := context.Background()
			got, done, err := ex.Next(ctx, []byte(tc.clientFirst))
			if done || err != nil || string(got) != tc.serverFirst {
				t.Fatalf("server-first = %q (done %v, %v), want %q", got, done, err, tc.serverFirst)
			}
			got, done, err = ex.Next(ctx, []byte(tc.clientFinal))
			if done || err != nil || string(got) != tc.serverFinal {
				t.Fatalf("server-final = %q (done %v, %v), want %q", got, done, err, tc.serverFinal)
			}
			if _, done, err = ex.Next(ctx, []byte{}); !done || err != nil || ex.Username() != "user" {
				t.Fatalf("end: done %v, err %v, user %q", done, err, ex.Username())
			}
		})
	}
}
