package redisclient

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Kind is the shape of a Redis deployment.
type Kind int

// The kinds of deployment a URL names.
const (
	// Single is one server: redis:// or rediss://.
	Single Kind = iota
	// Sentinel is a primary with replicas that a set of Sentinels watches
	// and fails over: redis+sentinel:// or rediss+sentinel://.
	Sentinel
	// Cluster is a Redis Cluster: redis+cluster:// or rediss+cluster://.
	Cluster
)

func (k Kind) String() string {
	switch k {
	case Sentinel:
		return "sentinel"
	case Cluster:
		return "cluster"
	}
	return "single"
}

// Target is what a URL names. Its String never shows the passwords.
type Target struct {
	Kind Kind
	// TLS: the rediss forms.
	TLS bool
	// Addrs are host:port: the server (Single), the Sentinels (Sentinel)
	// or the seed nodes (Cluster).
	Addrs []string
	// Username and Password authenticate to the Redis servers.
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the Sentinels
	// (query parameters sentinel_username and sentinel_password).
	SentinelUsername, SentinelPassword string
	// MasterName is the name the Sentinels know the primary by.
	MasterName string
	// DB is the database number (always 0 on a Cluster).
	DB int
	// single holds the parsed options of a Single URL.
	single *redis.Options
}

// String shows the target without its passwords.
func (t Target) String() string {
	s := t.Kind.String()
	if t.TLS {
		s += "+tls"
	}
	s += " " + strings.Join(t.Addrs, ",")
	if t.MasterName != "" {
		s += " master " + t.MasterName
	}
	return s + " db " + strconv.Itoa(t.DB)
}

// urlError wraps ErrURL with what is wrong, never with the URL's text.
func urlError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrURL}, args...)...)
}

// maxHosts bounds the hosts of one URL.
const maxHosts = 64

// Parse reads a Redis URL, one of
//
//	redis://[[user]:password@]host:port[/db]            (and rediss://)
//	redis+sentinel://[[user]:password@]host:port[,host:port...]/mastername[/db][?sentinel_username=u&sentinel_password=p]
//	redis+cluster://[[user]:password@]host:port[,host:port...][/0]
//
// and the rediss+sentinel and rediss+cluster forms with TLS (1.2 or
// later, certificates verified against each host's name). An error wraps
// ErrURL and quotes nothing of the URL, which may hold passwords.
func Parse(raw string) (Target, error) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return Target{}, urlError("no scheme")
	}
	var t Target
	switch strings.ToLower(scheme) {
	case "redis", "rediss":
		o, err := redis.ParseURL(raw)
		if err != nil {
			return Target{}, urlError("not a valid single-server URL")
		}
		return Target{Kind: Single, TLS: o.TLSConfig != nil, Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, single: o}, nil
	case "redis+sentinel":
		t.Kind = Sentinel
	case "rediss+sentinel":
		t.Kind, t.TLS = Sentinel, true
	case "redis+cluster":
		t.Kind = Cluster
	case "rediss+cluster":
		t.Kind, t.TLS = Cluster, true
	default:
		return Target{}, urlError("unknown scheme")
	}
	rest, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		user, pass, hasPass := strings.Cut(authority[:i], ":")
		var err error
		if t.Username, err = url.PathUnescape(user); err != nil {
			return Target{}, urlError("bad %%-escape in the user name")
		}
		if hasPass {
			if t.Password, err = url.PathUnescape(pass); err != nil {
				return Target{}, urlError("bad %%-escape in the password")
			}
		}
		authority = authority[i+1:]
	}
	hosts := strings.Split(authority, ",")
	if len(hosts) > maxHosts {
		return Target{}, urlError("more than %d hosts", maxHosts)
	}
	for i, h := range hosts {
		addr, err := hostPort(h)
		if err != nil {
			return Target{}, urlError("host %d of %d: %w", i+1, len(hosts), err)
		}
		t.Addrs = append(t.Addrs, addr)
	}
	segs := strings.Split(path, "/")
	if path == "" {
		segs = nil
	}
	switch t.Kind {
	case Sentinel:
		if len(segs) == 0 || segs[0] == "" {
			return Target{}, urlError("a sentinel URL needs the master name after the hosts (/mastername[/db])")
		}
		name, err := url.PathUnescape(segs[0])
		if err != nil || strings.ContainsAny(name, " \t\r\n") {
			return Target{}, urlError("bad master name")
		}
		t.MasterName = name
		segs = segs[1:]
	case Cluster:
		if len(segs) == 1 && segs[0] != "" && segs[0] != "0" {
			return Target{}, urlError("a cluster has database 0 only")
		}
	}
	switch {
	case len(segs) == 0 || (len(segs) == 1 && segs[0] == ""):
	case len(segs) == 1:
		db, err := strconv.Atoi(segs[0])
		if err != nil || db < 0 || db > 1<<20 || segs[0] != strconv.Itoa(db) {
			return Target{}, urlError("the database is not a number")
		}
		t.DB = db
	default:
		return Target{}, urlError("too many path segments")
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return Target{}, urlError("bad query")
		}
		for k, v := range q {
			switch {
			case t.Kind == Sentinel && k == "sentinel_username" && len(v) == 1:
				t.SentinelUsername = v[0]
			case t.Kind == Sentinel && k == "sentinel_password" && len(v) == 1:
				t.SentinelPassword = v[0]
			default:
				// Only known names are quoted: an unknown one may be a
				// mistyped password.
				return Target{}, urlError("unknown or repeated query parameter (this form takes sentinel_username and sentinel_password, sentinel URLs only)")
			}
		}
	}
	return t, nil
}

// hostPort checks one host:port ([v6]:port) and returns it for dialling.
func hostPort(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", errors.New("want host:port")
	}
	if host == "" || strings.ContainsAny(host, "/@?#%:[] \t\r\n") && net.ParseIP(host) == nil {
		return "", errors.New("bad host name")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return "", errors.New("port not a number from 1 to 65535")
	}
	return net.JoinHostPort(host, port), nil
}
