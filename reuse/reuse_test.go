package reuse_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/reuse"
	"github.com/threadmill/threadmill/workspace"
)

var key1 = strings.Repeat("a1", 32)
var key2 = strings.Repeat("b2", 32)

func checkStore(t *testing.T, s reuse.Store) {
	t.Helper()
	ctx := context.Background()
	e := reuse.Entry{Key: key1, RunID: "run-1", Step: "s", ItemKey: "s/x", Output: "out", Usage: workspace.Usage{InputTokens: 3, OutputTokens: 4}}
	if err := s.Save(ctx, "p", []reuse.Entry{e}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(ctx, "p", []string{key1, key2})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[key1].Output != "out" || got[key1].RunID != "run-1" || got[key1].Usage.Total() != 7 {
		t.Errorf("lookup: %+v, want the saved entry only", got)
	}
	if other, _ := s.Lookup(ctx, "other", []string{key1}); len(other) != 0 {
		t.Errorf("another pipeline found %+v", other)
	}
}

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(srv.Options())
	t.Cleanup(func() { _ = rdb.Close() })
	checkStore(t, reuse.NewRedis(rdb, "", time.Hour))
	ttl, err := rdb.TTL(context.Background(), "threadmill:reuse:{p}:"+key1).Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("ttl %s (%v), want the retention, 1h", ttl, err)
	}
}

func TestDirStoreExpiresAfterRetention(t *testing.T) {
	root := t.TempDir()
	s := reuse.NewDir(root, time.Hour)
	checkStore(t, s)
	path := filepath.Join(root, "p", reuse.DirName, key1[:2], key1+".json")
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Lookup(context.Background(), "p", []string{key1}); len(got) != 0 {
		t.Errorf("an output older than the retention was found: %+v", got)
	}
	if err := s.Save(context.Background(), "p", []reuse.Entry{{Key: key2, RunID: "r"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Save left the expired output %s (%v)", path, err)
	}
	if got, err := s.Lookup(context.Background(), "p", []string{"../../etc/passwd"}); err != nil || len(got) != 0 {
		t.Errorf("a key with a path in it: %v %v", got, err)
	}
}
