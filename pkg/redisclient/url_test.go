package redisclient

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		url  string
		want Target
	}{
		{"redis+sentinel://:s3cret@10.0.0.1:26379,[::1]:26380,sentinel.example:26381/mymaster/2",
			Target{Kind: Sentinel, Addrs: []string{"10.0.0.1:26379", "[::1]:26380", "sentinel.example:26381"}, Password: "s3cret", MasterName: "mymaster", DB: 2}},
		{"rediss+sentinel://app:p%40ss@s1:26379/mymaster?sentinel_password=sp&sentinel_username=su",
			Target{Kind: Sentinel, TLS: true, Addrs: []string{"s1:26379"}, Username: "app", Password: "p@ss", MasterName: "mymaster", SentinelUsername: "su", SentinelPassword: "sp"}},
		{"redis+sentinel://s1:26379/mymaster/", Target{Kind: Sentinel, Addrs: []string{"s1:26379"}, MasterName: "mymaster"}},
		{"redis+cluster://h1:7000,h2:7001,h3:7002", Target{Kind: Cluster, Addrs: []string{"h1:7000", "h2:7001", "h3:7002"}}},
		{"rediss+cluster://:pw@h1:7000/0", Target{Kind: Cluster, TLS: true, Addrs: []string{"h1:7000"}, Password: "pw"}},
		{"REDIS+CLUSTER://h1:7000/", Target{Kind: Cluster, Addrs: []string{"h1:7000"}}},
	} {
		got, err := Parse(c.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.url, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", c.url, got, c.want)
		}
	}
	single, err := Parse("rediss://u:pw@cache.example:6380/3")
	if err != nil || single.Kind != Single || !single.TLS || single.Addrs[0] != "cache.example:6380" || single.DB != 3 || single.Password != "pw" {
		t.Errorf("single: %+v, %v", single, err)
	}
	if s := single.String(); strings.Contains(s, "pw") || s != "single+tls cache.example:6380 db 3" {
		t.Errorf("String() = %q", s)
	}
}

// Every bad URL is refused with ErrURL and a reason, never quoting the
// password or anything else of the URL.
func TestParseRefuses(t *testing.T) {
	for url, why := range map[string]string{
		"http://:Hunter2x@h:1/0":                                                       "unknown scheme",
		"Hunter2x":                                                                     "no scheme",
		"redis://:Hunter2x@h:port/0":                                                   "not a valid single-server URL",
		"redis+sentinel://:Hunter2x@h:26379":                                           "needs the master name",
		"redis+sentinel://:Hunter2x@h:26379/":                                          "needs the master name",
		"redis+sentinel://:Hunter2x@h:26379/m/x":                                       "database is not a number",
		"redis+sentinel://:Hunter2x@h:26379/m/-1":                                      "database is not a number",
		"redis+sentinel://:Hunter2x@h:26379/m/01":                                      "database is not a number",
		"redis+sentinel://:Hunter2x@h:26379/m/0/1":                                     "too many path segments",
		"redis+sentinel://:Hunter2x@h:26379,/m":                                        "host 2 of 2: empty",
		"redis+sentinel://:Hunter2x@h:26379,h2/m":                                      "host 2 of 2: want host:port",
		"redis+sentinel://:Hunter2x@h:0/m":                                             "port not a number",
		"redis+sentinel://:Hunter2x@h:65536/m":                                         "port not a number",
		"redis+sentinel://:Hunter2x@:26379/m":                                          "bad host name",
		"redis+sentinel://:Hunter%zz@h:26379/m":                                        "bad %-escape in the password",
		"redis+sentinel://:p@h:26379/m?sentinel_pasword=Hunter2x":                      "unknown or repeated query parameter",
		"redis+sentinel://:p@h:26379/m?sentinel_password=a&sentinel_password=Hunter2x": "unknown or repeated query parameter",
		"redis+cluster://:Hunter2x@h:7000/1":                                           "database 0 only",
		"redis+cluster://:Hunter2x@h:7000?sentinel_password=x":                         "unknown or repeated query parameter",
		"redis+cluster://:Hunter2x@":                                                   "host 1 of 1: empty",
		"redis+cluster://" + strings.Repeat("h:1,", 64) + "h:1":                        "more than 64 hosts",
	} {
		_, err := Parse(url)
		if !errors.Is(err, ErrURL) || !strings.Contains(err.Error(), why) {
			t.Errorf("Parse(%q) = %v, want ErrURL with %q", url, err, why)
			continue
		}
		if strings.Contains(err.Error(), "Hunter") {
			t.Errorf("Parse(%q): the error quotes the password: %v", url, err)
		}
		if _, err := Open(url, 0); !errors.Is(err, ErrURL) {
			t.Errorf("Open(%q) = %v, want ErrURL", url, err)
		}
	}
}

// FuzzParse parses any URL: no panic; an error wraps ErrURL and quotes
// no password; an accepted URL names at least one host:port, and a
// Sentinel one a master name.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"redis://:pw@h:6379/0", "rediss://u:pw@h:6380/1",
		"redis+sentinel://u:pw@h1:26379,h2:26379/mymaster/0", "rediss+sentinel://h1:26379/m?sentinel_password=x",
		"redis+cluster://h1:7000,h2:7001", "rediss+cluster://:pw@[::1]:7000/0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, url string) {
		tg, err := Parse(url)
		if err != nil {
			if !errors.Is(err, ErrURL) {
				t.Fatalf("error %v does not wrap ErrURL", err)
			}
			if at := strings.LastIndexByte(url, '@'); at > 0 {
				if _, pw, ok := strings.Cut(url[:at], "://"); ok {
					if _, pw, ok = strings.Cut(pw, ":"); ok && len(pw) >= 8 && !strings.ContainsAny(pw, "/@ ") && strings.Contains(err.Error(), pw) {
						t.Fatalf("error %q quotes the password %q", err, pw)
					}
				}
			}
			return
		}
		if len(tg.Addrs) == 0 || (tg.Kind == Sentinel && tg.MasterName == "") {
			t.Fatalf("accepted %+v", tg)
		}
		if tg.Password != "" && len(tg.Password) >= 8 && strings.Contains(tg.String(), tg.Password) && !strings.Contains(strings.Join(tg.Addrs, ",")+tg.MasterName, tg.Password) {
			t.Fatalf("String() %q shows the password", tg.String())
		}
	})
}
