package table

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/smtpgate/smtpgate/pkg/redisclient"
)

// redisParams are the parameters of a redis: table's .cf file.
var redisParams = []string{"url", "key_prefix"}

// RedisTable is smtpgate's own "redis:/etc/smtpgate/x.cf" table: a
// fixed-string table (keys and values as in a hash: access table) kept
// in Redis, so that every policy replica sees a change at once. Its .cf
// file names the server with "url" (a redis:// or rediss:// URL, as the
// smtpgate_*_redis parameters; secret: never shown) and the keys'
// "key_prefix" (default empty). Keys are case-folded when stored and
// when looked up, as postmap(1) and hash: lookups do. The connection is
// opened on first use.
type RedisTable struct {
	spec, url, prefix string
	opts              Options

	mu     sync.Mutex // guards client and closed
	client redis.UniversalClient
	closed bool
}

// OpenRedis opens a redis: table; Open does the same for "redis:...".
func OpenRedis(spec string, opts Options) (*RedisTable, error) {
	opts = opts.withDefaults()
	typ, name, err := splitSpec(spec)
	if err != nil {
		return nil, err
	}
	if typ != "redis" {
		return nil, fmt.Errorf("table %q: not a redis: table", spec)
	}
	path, err := cfPath(spec, name, opts)
	if err != nil {
		return nil, err
	}
	return openRedis(spec, path, opts)
}

func openRedis(spec, path string, opts Options) (*RedisTable, error) {
	f, err := readCF("redis", path, redisParams)
	if err != nil {
		return nil, err
	}
	url := f.str("url", "")
	if url == "" {
		return nil, fmt.Errorf("table %s: %s: url: missing; name the Redis server (redis://host:port/db)", spec, f.pos("url"))
	}
	if _, err := redis.ParseURL(url); err != nil {
		return nil, fmt.Errorf("table %s: %s: url: not a valid redis:// or rediss:// URL (value not shown: it may hold a password)", spec, f.pos("url"))
	}
	return &RedisTable{spec: spec, url: url, prefix: f.str("key_prefix", ""), opts: opts}, nil
}

// conn returns the client, made on first use.
func (t *RedisTable) conn() (redis.UniversalClient, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errClosed
	}
	if t.client == nil {
		c, err := redisclient.Open(t.url, t.opts.QueryTimeout)
		if err != nil {
			return nil, err
		}
		t.client = c
	}
	return t.client, nil
}

// key is the Redis key of a table key.
func (t *RedisTable) key(k string) string { return t.prefix + strings.ToLower(k) }

// Lookup gets the key's value. Redis unreachable or failing is an
// ErrLookup, never "not found".
func (t *RedisTable) Lookup(ctx context.Context, key string) (string, bool, error) {
	c, err := t.conn()
	if err != nil {
		return "", false, &lookupError{table: t.spec, err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.QueryTimeout)
	defer cancel()
	v, err := c.Get(ctx, t.key(key)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		t.opts.Logger.WarnContext(ctx, "table lookup failed", "table", t.spec, "err", err)
		return "", false, &lookupError{table: t.spec, err: err}
	}
	return v, true, nil
}

// Set stores entries (key → value), all or none (MULTI/EXEC).
func (t *RedisTable) Set(ctx context.Context, entries []Entry) error {
	c, err := t.conn()
	if err != nil {
		return err
	}
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			p.Set(ctx, t.key(e.Key), e.Value, 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("table %s: %w", t.spec, err)
	}
	return nil
}

// Delete removes a key; deleted is false when there was none.
func (t *RedisTable) Delete(ctx context.Context, key string) (deleted bool, err error) {
	c, err := t.conn()
	if err != nil {
		return false, err
	}
	n, err := c.Del(ctx, t.key(key)).Result()
	if err != nil {
		return false, fmt.Errorf("table %s: %w", t.spec, err)
	}
	return n > 0, nil
}

// ReadText reads a text table in postmap(1)'s input format ("key
// whitespace value", # comments, continuation lines) for Set; a bad line
// is an error with its file:line, as for hash: tables.
func ReadText(path string) ([]Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := &source{typ: "text", file: path, data: data}
	m, err := parseHash(s)
	if err != nil {
		return nil, err
	}
	return m.entries(), nil
}

// Probe pings the server, for check.
func (t *RedisTable) Probe(ctx context.Context) error {
	c, err := t.conn()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.QueryTimeout)
	defer cancel()
	return c.Ping(ctx).Err()
}

func (t *RedisTable) Pattern() bool    { return false }
func (t *RedisTable) Name() string     { return t.spec }
func (t *RedisTable) Entries() []Entry { return nil }

// Close closes the connections; later lookups fail.
func (t *RedisTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.client == nil {
		return nil
	}
	return t.client.Close()
}
