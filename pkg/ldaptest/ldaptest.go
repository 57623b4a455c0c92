// Package ldaptest runs a throwaway OpenLDAP slapd for tests: its own
// slapd.conf and mdb database in a temporary directory, loaded from LDIF
// with slapadd, listening on ldap://127.0.0.1:PORT (a free port) and on
// an ldapi:// socket of its own; killed by its process id when the test
// ends, and restartable on the same port with the same data. A missing
// slapd fails the test (scripts/deps --test installs the slapd package
// without configuring the system's instance); it is never skipped. Test
// support only.
//
// It trusts the slapd it starts, which listens on loopback and a socket
// in the test's directory, and is reached by nobody but the test.
package ldaptest

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The binaries run.
const (
	Slapd   = "/usr/sbin/slapd"
	Slapadd = "/usr/sbin/slapadd"
)

// The directory's suffix and its administrator (the rootdn, whose
// password is in slapd.conf).
const (
	Suffix = "dc=example,dc=com"
	RootDN = "cn=admin,dc=example,dc=com"
	RootPW = "admin-secret"
)

// Options say what a slapd serves besides plain LDAP.
type Options struct {
	// LDIF is the directory's contents (see Start).
	LDIF string
	// CertFile and KeyFile, when set, are the server's certificate and
	// key: slapd then offers StartTLS on its ldap:// port and listens
	// on ldaps://127.0.0.1:TLSPort too.
	CertFile, KeyFile string
}

// Server is one slapd.
type Server struct {
	// Port is its TCP port on 127.0.0.1.
	Port int
	// TLSPort is its ldaps:// port, when it has a certificate.
	TLSPort int
	// Socket is the path of its ldapi:// socket.
	Socket string
	dir    string

	mu     sync.Mutex // guards cmd, out, exited
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan struct{}
}

// URL is the server's ldap://127.0.0.1:PORT URL.
func (s *Server) URL() string { return "ldap://127.0.0.1:" + strconv.Itoa(s.Port) }

// LDAPSURL is the server's ldaps://127.0.0.1:TLSPORT URL (with a certificate).
func (s *Server) LDAPSURL() string { return "ldaps://127.0.0.1:" + strconv.Itoa(s.TLSPort) }

// LDAPIURL is the server's ldapi:// URL (the socket path percent-encoded).
func (s *Server) LDAPIURL() string { return "ldapi://" + url.PathEscape(s.Socket) }

// Start writes a slapd.conf for Suffix (schemas core, cosine,
// inetorgperson, nis and misc: inetOrgPerson, inetLocalMailRecipient,
// nisMailAlias, dNSDomain and domainRelatedObject entries), loads ldif
// (which must create Suffix's entry first) with slapadd, and runs slapd
// until it answers.
func Start(t testing.TB, ldif string) *Server {
	t.Helper()
	return StartWith(t, Options{LDIF: ldif})
}

// StartWith is Start with TLS when o has a certificate.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	ldif := o.LDIF
	for _, b := range []string{Slapd, Slapadd} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("%s is needed (install the slapd package with scripts/deps --test): %v", b, err)
		}
	}
	// A short path: a Unix socket's name is limited to 107 bytes.
	dir, err := os.MkdirTemp("", "ldaptest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Postfix's daemons (the differential tests) run as the postfix
	// user and only need the TCP port; the socket stays the test's.
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/misc.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 16777216
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/data
index objectClass eq
index mail,uid,cn,associatedDomain,mailLocalAddress eq
`, dir, Suffix, RootDN, RootPW)
	if o.CertFile != "" {
		// Global directives go before the first database.
		conf = strings.Replace(conf, "database mdb\n", fmt.Sprintf("TLSCertificateFile %s\nTLSCertificateKeyFile %s\ndatabase mdb\n", o.CertFile, o.KeyFile), 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.ldif"), []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(Slapadd, "-q", "-f", filepath.Join(dir, "slapd.conf"), "-l", filepath.Join(dir, "data.ldif")).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}
	s := &Server{Port: freePort(t), Socket: filepath.Join(dir, "ldapi"), dir: dir}
	if o.CertFile != "" {
		s.TLSPort = freePort(t)
	}
	t.Cleanup(s.Stop)
	s.Restart(t)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Restart runs slapd again (after Stop) on the same port, with the same
// data, and waits until it answers; a port still held by the server just
// stopped is retried for a while.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := new(bytes.Buffer)
		// -d 0: in the foreground, so that the process id is slapd's.
		urls := s.URL() + "/ " + s.LDAPIURL() + "/"
		if s.TLSPort != 0 {
			urls += " " + s.LDAPSURL() + "/"
		}
		cmd := exec.Command(Slapd, "-d", "0", "-f", filepath.Join(s.dir, "slapd.conf"), "-h", urls)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", Slapd, err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		s.mu.Lock()
		s.cmd, s.out, s.exited = cmd, out, exited
		s.mu.Unlock()
		for {
			if answers(s.Port) && socketUp(s.Socket) {
				return
			}
			select {
			case <-exited: // the port may still be held: start again
			case <-time.After(20 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				s.Stop()
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapd on port %d does not answer:\n%s", s.Port, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills slapd by its process id and waits for it to exit.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
	// A killed slapd leaves its socket file behind; the next one
	// would refuse to bind it.
	_ = os.Remove(s.Socket)
}

// Log is what slapd wrote to its standard output and error.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// answers reports a server that accepts a connection and answers an
// anonymous LDAPv3 bind (the smallest request: a BER sequence written by
// hand, to keep this package free of an LDAP client).
func answers(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	// LDAPMessage { messageID 1, bindRequest { version 3, name "", simple "" } }
	bind := []byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00}
	if _, err := c.Write(bind); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	// A bindResponse (application 1, tag 0x61) with resultCode 0.
	return err == nil && n > 0 && bytes.Contains(buf[:n], []byte{0x61}) && bytes.Contains(buf[:n], []byte{0x0a, 0x01, 0x00})
}

func socketUp(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Entries is a sample directory of a mail site for the tests: the
// suffix, domains (dNSDomain + domainRelatedObject, associatedDomain),
// users (inetOrgPerson + inetLocalMailRecipient: uid, mail,
// mailRoutingAddress the user's SASL login) and aliases (nisMailAlias:
// cn the alias address, rfc822MailMember its targets), an entry whose
// labeledURI is an LDAP URL that finds lisa (uid=sales), a group
// (groupOfNames cn=staff, whose members are DNs, one of them missing), and a service
// account for binds (cn=postfix, password ServicePW).
const Entries = `dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=domains,dc=example,dc=com
objectClass: organizationalUnit
ou: domains

dn: dc=example.com,ou=domains,dc=example,dc=com
objectClass: dNSDomain
objectClass: domainRelatedObject
dc: example.com
associatedDomain: example.com

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: uid=lisa,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: lisa
cn: Lisa
sn: Lisa
mail: lisa@example.com
mailRoutingAddress: lisa@example.com

dn: uid=john,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: inetLocalMailRecipient
uid: john
cn: John
sn: John
mail: john@example.com
mailRoutingAddress: john@example.org

dn: uid=sales,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: sales
cn: Sales
sn: Sales
labeledURI: ldap:///ou=people,dc=example,dc=com?mail?one?(uid=lisa)

dn: ou=aliases,dc=example,dc=com
objectClass: organizationalUnit
ou: aliases

dn: cn=team@example.com,ou=aliases,dc=example,dc=com
objectClass: nisMailAlias
cn: team@example.com
rfc822MailMember: lisa@example.com
rfc822MailMember: john@example.com

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups

dn: cn=staff,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: staff
member: uid=lisa,ou=people,dc=example,dc=com
member: uid=john,ou=people,dc=example,dc=com
member: uid=gone,ou=people,dc=example,dc=com

dn: cn=postfix,dc=example,dc=com
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: postfix
userPassword: postfix-secret
`

// ServiceDN and ServicePW are the service account of Entries.
const (
	ServiceDN = "cn=postfix,dc=example,dc=com"
	ServicePW = "postfix-secret"
)
