package listener

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestListenKeepAlive: an accepted connection has TCP keepalive on with
// the kernel's times, as Postfix's smtpd has it, not Go's 15 s.
func TestListenKeepAlive(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_time")
	if err != nil {
		t.Fatal(err)
	}
	kernelIdle, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle int
	var oerr, ierr error
	if err := rc.Control(func(fd uintptr) {
		on, oerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle, ierr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
	}); err != nil {
		t.Fatal(err)
	}
	if oerr != nil || ierr != nil {
		t.Fatalf("getsockopt: %v, %v", oerr, ierr)
	}
	if on != 1 {
		t.Errorf("SO_KEEPALIVE = %d on the accepted connection, want 1", on)
	}
	if idle != kernelIdle {
		t.Errorf("TCP_KEEPIDLE = %d s, want the kernel's tcp_keepalive_time, %d s", idle, kernelIdle)
	}
}
