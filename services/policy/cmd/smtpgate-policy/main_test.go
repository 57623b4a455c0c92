package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const goodMain = `myhostname = mail.example.org
mydestination = example.org
smtpgate_policy_listen = 127.0.0.1:0
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
`

func configDir(t *testing.T, mainCF, masterCF string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o600); err != nil {
		t.Fatal(err)
	}
	if masterCF != "" {
		if err := os.WriteFile(filepath.Join(dir, "master.cf"), []byte(masterCF), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name       string
		main       string
		master     string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{name: "good", main: goodMain, master: "127.0.0.1:2587 inet n - n - - smtpd\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n", args: []string{"check"}},
		{name: "unknown restriction", main: goodMain + "smtpd_recipient_restrictions = permit_mynetwork\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{`main.cf:5: smtpd_recipient_restrictions: unknown restriction "permit_mynetwork"`}},
		{name: "unknown parameter", main: goodMain + "smtpd_relay_restriction = reject\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{`main.cf:5: unknown parameter "smtpd_relay_restriction"`}},
		{name: "open relay refused", main: goodMain + "smtpd_relay_restrictions = permit_mynetworks\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{"main.cf:5: in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of"}},
		{name: "bad listener override", main: goodMain, master: "127.0.0.1:2587 inet n - n - - smtpd\n  -o soft_bounce=maybe\n", args: []string{"check"}, wantCode: 1,
			wantStderr: []string{"master.cf:1: service 127.0.0.1:2587: -o soft_bounce=maybe"}},
		{name: "usage", main: goodMain, args: []string{"serve"}, wantCode: 2, wantStderr: []string{"usage: smtpgate-policy [-c CONFIG_DIR] [check]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := configDir(t, tc.main, tc.master)
			var stderr bytes.Buffer
			code := run(context.Background(), append([]string{"-c", dir}, tc.args...), io.Discard, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if len(tc.wantStderr) == 0 && stderr.Len() != 0 {
				t.Errorf("unexpected stderr:\n%s", stderr.String())
			}
		})
	}
}

func TestMissingConfig(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-c", t.TempDir(), "check"}, io.Discard, &stderr); code != 1 {
		t.Errorf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestServeUntilCancelled(t *testing.T) {
	dir := configDir(t, goodMain, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-c", dir}, io.Discard, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), `msg=listening`) {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, stderr.String())
	}
	for _, want := range []string{"msg=configuration", "addr=127.0.0.1:", "msg=stopped"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, stderr.String())
		}
	}
}
