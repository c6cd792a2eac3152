package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/threadmill/threadmill/internal/embedded"
	"github.com/threadmill/threadmill/internal/logging"
	"github.com/threadmill/threadmill/internal/secret"
)

// envRedisURL names the Redis of the queue and the run state when --redis is
// not given.
const envRedisURL = "THREADMILL_REDIS_URL"

// redisURLHelp documents the URL forms; commands that use Redis append it to
// their long help.
const redisURLHelp = `Redis (--redis, else THREADMILL_REDIS_URL):
  redis://[user:password@]host:6379[/db]     a Redis server (rediss:// for TLS)
  unix:///path/to/redis.sock[?db=N]          a Redis server on a unix socket
  redis://host:26379?master_name=mymaster    Sentinel (more sentinels: &addr=host2:26379)
  redis+cluster://host1:6379?addr=host2:6379 a Redis Cluster
Query parameters set client options (dial_timeout=5s, pool_size=50, ...).`

// envLookup returns lookup, or os.LookupEnv when it is nil: commands read
// the environment through their options' LookupEnv, which tests set.
func envLookup(lookup func(string) (string, bool)) func(string) (string, bool) {
	if lookup == nil {
		return os.LookupEnv
	}
	return lookup
}

// redisFlags are the flags of commands that use Redis.
type redisFlags struct {
	URL string
}

func (r *redisFlags) add(f *pflag.FlagSet, usage string) {
	f.StringVar(&r.URL, "redis", "", usage)
}

// resolve returns the Redis URL from the flag, else from THREADMILL_REDIS_URL,
// and where it came from ("" when neither is set).
func (r *redisFlags) resolve(lookup func(string) (string, bool)) (rawURL, source string) {
	if u := strings.TrimSpace(r.URL); u != "" {
		return u, "--redis"
	}
	if v, ok := lookup(envRedisURL); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), envRedisURL
	}
	return "", ""
}

// required returns the URL or an error naming the flag and the variable.
func (r *redisFlags) required(lookup func(string) (string, bool)) (rawURL, source string, err error) {
	rawURL, source = r.resolve(lookup)
	if rawURL == "" {
		return "", "", fmt.Errorf("no Redis: give --redis URL or set %s (e.g. redis://localhost:6379)", envRedisURL)
	}
	return rawURL, source, nil
}

// redisConn is a Redis client and what to close with it: a real Redis from a
// URL, or the embedded server.
type redisConn struct {
	RDB redis.UniversalClient
	// Embedded is the in-process server, nil for a real Redis.
	Embedded *embedded.Server
	// Display names the server without its password.
	Display string
	// Password is the URL's password, a secret for the log redactor.
	Password string
}

// Close closes the client and stops the embedded server.
func (c *redisConn) Close() error {
	err := c.RDB.Close()
	if c.Embedded != nil {
		err = errors.Join(err, c.Embedded.Close())
	}
	return err
}

// connectRedis opens the Redis of rawURL (source names the flag or variable it
// came from, for messages) with room for poolSize connections, and checks it
// answers.
func connectRedis(ctx context.Context, rawURL, source string, poolSize int) (*redisConn, error) {
	rdb, password, err := newRedisClient(rawURL, poolSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	display := redactURL(rawURL)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis %s (from %s) does not answer: %w", display, source, err)
	}
	return &redisConn{RDB: rdb, Display: display, Password: password}, nil
}

// embeddedGCPercent is the GC target of a process running the embedded
// Redis, and embeddedMemoryLimit its soft memory limit (see
// startEmbeddedRedis).
const (
	embeddedGCPercent   = 400
	embeddedMemoryLimit = 100 << 20
)

// embeddedFanOutWindow is the least number of a step's items the embedded
// default keeps queued or in flight (worker.Config.FanOutWindow): a few
// MB of tasks in its in-process Redis, and many more than its workers can
// take at once.
const embeddedFanOutWindow = 4096

// startEmbeddedRedis starts the in-process Redis. It stops with Close, not
// with ctx, so that a worker draining after an interrupt keeps its Redis.
func startEmbeddedRedis(ctx context.Context, poolSize int) (*redisConn, error) {
	// The embedded server runs each Lua script (asynq's and the run
	// store's) in a fresh interpreter, and the garbage collector becomes
	// the bottleneck of the whole run: a higher GC target doubles the
	// scripts per second. A soft memory limit keeps that target from
	// multiplying the heap: the collector runs as often as it must to stay
	// under it, so a run of any size stays around the limit while its live
	// heap (run state; records are on disk) is below it. An explicit GOGC
	// or GOMEMLIMIT wins: a process given either keeps Go's behaviour for
	// it.
	_, gogc := os.LookupEnv("GOGC")
	_, memlimit := os.LookupEnv("GOMEMLIMIT")
	if !gogc && !memlimit {
		debug.SetGCPercent(embeddedGCPercent)
		debug.SetMemoryLimit(embeddedMemoryLimit)
	}
	srv, err := embedded.Start(context.WithoutCancel(ctx), embedded.Options{PoolSize: poolSize})
	if err != nil {
		return nil, err
	}
	return &redisConn{RDB: srv.Client(), Embedded: srv, Display: "embedded (in-process)"}, nil
}

// newRedisClient parses a Redis URL (see redisURLHelp) into a client. Its
// errors never show the URL's password.
func newRedisClient(rawURL string, poolSize int) (redis.UniversalClient, string, error) {
	c, pw, err := parseRedisURL(rawURL, poolSize)
	if err != nil {
		if secret := rawPassword(rawURL); secret != "" {
			msg := strings.ReplaceAll(err.Error(), secret, "xxxxx")
			msg = strings.ReplaceAll(msg, url.PathEscape(secret), "xxxxx")
			err = errors.New(msg)
		}
		return nil, "", err
	}
	return c, pw, nil
}

// rawPassword returns the password part of a URL's userinfo by plain string
// search, so that it can be hidden even when the URL does not parse.
func rawPassword(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		rest = raw
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok {
		return ""
	}
	return pw
}

func parseRedisURL(rawURL string, poolSize int) (redis.UniversalClient, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return nil, "", fmt.Errorf("%s is not a URL: %w", redactURL(rawURL), err)
	}
	password, _ := u.User.Password()
	explicitPool := u.Query().Has("pool_size")
	switch {
	case strings.HasSuffix(u.Scheme, "+cluster"):
		u.Scheme = strings.TrimSuffix(u.Scheme, "+cluster")
		opt, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, "", fmt.Errorf("cluster URL %s: %w", redactURL(rawURL), err)
		}
		if !explicitPool {
			opt.PoolSize = max(opt.PoolSize, poolSize)
		}
		return redis.NewClusterClient(opt), password, nil
	case u.Query().Has("master_name"):
		opt, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, "", fmt.Errorf("sentinel URL %s: %w", redactURL(rawURL), err)
		}
		if !explicitPool {
			opt.PoolSize = max(opt.PoolSize, poolSize)
		}
		return redis.NewFailoverClient(opt), password, nil
	default:
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, "", fmt.Errorf("URL %s: %w", redactURL(rawURL), err)
		}
		if !explicitPool {
			opt.PoolSize = max(opt.PoolSize, poolSize)
		}
		return redis.NewClient(opt), password, nil
	}
}

// redactURL hides the password of a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			return secret.Mask + "@" + raw[i+1:]
		}
		return raw
	}
	return u.Redacted()
}

// poolFor is the connection pool size for a worker of concurrency n: one
// connection per task in flight, plus asynq's own and the progress poller's.
func poolFor(n int) int { return 2*n + 16 }

// asynqClient returns an asynq client sharing rdb.
func asynqClient(rdb redis.UniversalClient) *asynq.Client { return asynq.NewClientFromRedisClient(rdb) }

// logFlags are the logging flags of the long-running commands.
type logFlags struct {
	Level  string
	Format string
}

func (l *logFlags) add(f *pflag.FlagSet, defaultLevel string) {
	f.StringVar(&l.Level, "log-level", defaultLevel, "log level: debug, info, warn or error")
	f.StringVar(&l.Format, "log-format", "text", "log format: text or json")
}

// validate checks the flags; messages name the flag.
func (l *logFlags) validate() error {
	if _, err := logging.ParseLevel(l.Level); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	if _, err := logging.ParseFormat(l.Format); err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	return nil
}

// logger returns a logger writing to w that masks secrets.
func (l *logFlags) logger(w io.Writer, secrets ...string) (*slog.Logger, error) {
	level, err := logging.ParseLevel(l.Level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	format, err := logging.ParseFormat(l.Format)
	if err != nil {
		return nil, fmt.Errorf("--log-format: %w", err)
	}
	return logging.New(w, logging.Options{Level: level, Format: format, Secrets: secrets})
}
