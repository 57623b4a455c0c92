package policyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	in := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=\nrecipient=a@example.org\r\n\n" +
		"request=smtpd_access_policy\nprotocol_state=DATA\nx=a=b\n\n"
	r := bufio.NewReader(strings.NewReader(in))
	req, err := Read(r)
	if err != nil {
		t.Fatal(err)
	}
	if req["protocol_state"] != "RCPT" || req["sender"] != "" || req["recipient"] != "a@example.org" || len(req) != 5 {
		t.Errorf("first request %v", req)
	}
	req, err = Read(r)
	if err != nil || req["x"] != "a=b" {
		t.Errorf("second request %v, %v", req, err)
	}
	if _, err := Read(r); err != io.EOF {
		t.Errorf("end: %v, want io.EOF", err)
	}
}

func TestReadMalformed(t *testing.T) {
	for name, in := range map[string]string{
		"no request attribute": "protocol_state=RCPT\n\n",
		"wrong request":        "request=other\n\n",
		"empty request":        "\n",
		"no equals sign":       "request=smtpd_access_policy\ngarbage\n\n",
		"empty name":           "request=smtpd_access_policy\n=x\n\n",
		"NUL":                  "request=smtpd_access_policy\nsender=a\x00b\n\n",
		"huge line":            "request=smtpd_access_policy\nsender=" + strings.Repeat("x", MaxLine) + "\n\n",
		"too many attributes":  "request=smtpd_access_policy\n" + strings.Repeat("a=b\n", MaxAttributes+1) + "\n",
		"cut short":            "request=smtpd_access_policy\nsender=a",
	} {
		_, err := Read(bufio.NewReader(strings.NewReader(in)))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func TestWrite(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, "554 5.7.1 go away"); err != nil || b.String() != "action=554 5.7.1 go away\n\n" {
		t.Errorf("%q %v", b.String(), err)
	}
	if err := Write(&b, "DUNNO\naction=OK"); err == nil {
		t.Error("a reply with a newline was written")
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=a@b\n\n"))
	f.Add([]byte("request=smtpd_access_policy\n\nrequest=smtpd_access_policy\nx=\n\n"))
	f.Add([]byte("=\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		for range 10 {
			req, err := Read(r)
			if err != nil {
				return
			}
			if req["request"] != "smtpd_access_policy" || len(req) > MaxAttributes {
				t.Fatalf("accepted %v", req)
			}
		}
	})
}
