package policy

import (
	"context"
	"fmt"
	"strings"
	"time"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	"github.com/smtpgate/smtpgate/services/policy/internal/table"
)

// authTable is the lookup table "auth:users": the users of smtpgate-auth.
// A lookup asks AuthService/LookupUser; the value is the user name as
// stored, so the table serves as local_recipient_maps (valid recipients)
// and as smtpd_sender_login_maps (each address owned by the login of the
// same name). It matches whole addresses only (Pattern is true): a user
// is never found by its domain or local part alone. A failed call is an
// error, so the check fails closed. Existing users are remembered in
// cache (shared by every auth:users table of the process; nil: none);
// unknown users and errors never are (see userCache).
type authTable struct {
	spec  string
	users *authUsers
}

func (t *authTable) Name() string           { return t.spec }
func (t *authTable) Pattern() bool          { return true }
func (t *authTable) Entries() []table.Entry { return nil }

func (t *authTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	u := t.users
	if u.client == nil {
		return "", false, fmt.Errorf("%s: no connection to smtpgate-auth", t.spec)
	}
	if key == "" || strings.HasPrefix(key, "@") || strings.HasSuffix(key, "@") {
		return "", false, nil
	}
	if name, ok := u.cache.get(key); ok {
		u.counts.hits.Add(1)
		return name, true, nil
	}
	u.counts.misses.Add(1)
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	resp, err := u.client.LookupUser(ctx, &authv1.LookupUserRequest{Username: key})
	if err != nil {
		return "", false, fmt.Errorf("%s: ask smtpgate-auth about %q: %w", t.spec, key, err)
	}
	if resp.GetExists() {
		u.cache.put(key, resp.GetUsername())
	}
	return resp.GetUsername(), resp.GetExists(), nil
}

// authUsers is what every auth:users table of a process shares: the
// client (nil until New binds it, and while only checking the
// configuration), the call timeout, the cache of existing users (nil:
// off) and the lookup counts.
type authUsers struct {
	client  authv1.AuthServiceClient
	timeout time.Duration
	cache   *userCache
	counts  userLookups
}

// openAuthTable opens "auth:users" on u.
func openAuthTable(spec string, u *authUsers) (table.Table, error) {
	if spec != "auth:users" {
		return nil, fmt.Errorf("table %s: the auth table is auth:users", spec)
	}
	return &authTable{spec: spec, users: u}, nil
}
