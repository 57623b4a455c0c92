package importcf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/smtpgate/smtpgate/pkg/maincf"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// The files a written configuration names. Lookup tables (cidr:, pcre:,
// regexp:, hash: and the other indexed types, read from their source
// text) and the .cf files of database tables (cfTypes) are copied
// beside the written main.cf and named relatively, so
// that the directory is whole and passes check on another machine.
// Certificates and private keys are not copied: a copy of a key is one
// more place a secret lives, with whatever mode the copy gets, and a
// renewed certificate (certbot renews in place) would never reach the
// copy. They are named by their absolute path instead, where they are.

// cfTypes are the table types configured by a .cf file of Postfix's
// (sqlite_table(5), mysql_table(5), pgsql_table(5), ldap_table(5)) or
// smtpgate's (redis:). The file is copied as it is, with its mode: it
// may hold a database password. The database it names stays where it
// is (a relative sqlite: dbpath is relative to the written directory).
var cfTypes = []string{"sqlite", "mysql", "pgsql", "ldap", "redis"}

// keyFiles are the parameters that name a certificate or a key.
var keyFiles = []string{"smtpd_tls_cert_file", "smtpd_tls_key_file"}

// copier copies the files of one written configuration.
type copier struct {
	r   *Report
	dir string
	// names maps a source file to its name in dir.
	names map[string]string
	used  map[string]bool
}

func newCopier(r *Report, dir string) *copier {
	return &copier{r: r, dir: dir, names: map[string]string{}, used: map[string]bool{"main.cf": true, "master.cf": true}}
}

// tableFile splits a file-backed table spec ("proxy:hash:/etc/x") into
// its type prefix ("proxy:hash:") and file.
func tableFile(word string) (prefix, file string, ok bool) {
	rest := word
	for {
		typ, name, found := strings.Cut(rest, ":")
		if !found {
			return "", "", false
		}
		if typ == "proxy" {
			prefix += "proxy:"
			rest = name
			continue
		}
		if typ == "inline" || typ == "static" || name == "" || strings.ContainsAny(name, "${}() \t") {
			return "", "", false
		}
		// The database and directory tables name their .cf file
		// (mysql:/etc/postfix/x.cf); socketmap: and tcp: name a server.
		cf := slices.Contains(cfTypes, typ) && (strings.HasPrefix(name, "/") || strings.HasPrefix(name, "."))
		if !slices.Contains(table.Supported, typ) && !cf {
			return "", "", false
		}
		return prefix + typ + ":", name, true
	}
}

// rewrite returns value with its table files copied into dir and named
// relatively, and its certificate and key files named absolutely.
func (c *copier) rewrite(name, value string) (string, error) {
	if slices.Contains(keyFiles, name) {
		if value != "" && !filepath.IsAbs(value) && !strings.Contains(value, "$") {
			return replaceWord(value, value, filepath.Join(c.abs(), value)), nil
		}
		return value, nil
	}
	out := value
	for _, w := range maincf.SplitList(value) {
		prefix, file, ok := tableFile(w)
		if !ok {
			continue
		}
		local, err := c.copy(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		typ := strings.TrimSuffix(prefix, ":")
		if typ = typ[strings.LastIndexByte(typ, ':')+1:]; slices.Contains(cfTypes, typ) && !strings.HasPrefix(local, ".") {
			// Postfix reads a name that does not start with "/" or "." as
			// main.cf parameters, not a file.
			local = "./" + local
		}
		out = replaceWord(out, w, prefix+local)
	}
	return out, nil
}

// abs is the directory relative names of the Postfix configuration are
// relative to (the one import read them from), made absolute.
func (c *copier) abs() string {
	d, err := filepath.Abs(c.r.dir)
	if err != nil {
		return c.r.dir
	}
	return d
}

// copy copies one table file into dir, once, and returns its name there.
func (c *copier) copy(file string) (string, error) {
	src := file
	if !filepath.IsAbs(src) {
		src = filepath.Join(c.abs(), src)
	}
	if n, ok := c.names[src]; ok {
		return n, nil
	}
	base := filepath.Base(src)
	n := base
	for i := 2; c.used[n]; i++ {
		n = fmt.Sprintf("%s.%d", base, i)
	}
	info, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("copy table: %w", err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("copy table: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, n), data, info.Mode().Perm()); err != nil {
		return "", fmt.Errorf("copy table: %w", err)
	}
	c.names[src], c.used[n] = n, true
	return n, nil
}

// replaceWord replaces old with repl in s where old is a whole list
// element (between separators of a Postfix list or an = sign).
func replaceWord(s, old, repl string) string {
	sep := func(b byte) bool { return strings.IndexByte(" \t\r\n,={}", b) >= 0 }
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(old)
		if (i == 0 || sep(s[i-1])) && (end == len(s) || sep(s[end])) {
			b.WriteString(s[:i])
			b.WriteString(repl)
		} else {
			b.WriteString(s[:end])
		}
		s = s[end:]
	}
}
