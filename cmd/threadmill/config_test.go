package main

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/threadmill/threadmill/internal/redistest"
)

func TestRedisFlagsPrecedence(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	var f redisFlags
	if u, src := f.resolve(env(nil)); u != "" || src != "" {
		t.Errorf("nothing set: %q %q", u, src)
	}
	if _, _, err := f.required(env(nil)); err == nil || !strings.Contains(err.Error(), "--redis") || !strings.Contains(err.Error(), envRedisURL) {
		t.Errorf("required without flag or env: %v", err)
	}
	if u, src := f.resolve(env(map[string]string{envRedisURL: " redis://env:6379 "})); u != "redis://env:6379" || src != envRedisURL {
		t.Errorf("env only: %q %q", u, src)
	}
	f.URL = "redis://flag:6379"
	if u, src := f.resolve(env(map[string]string{envRedisURL: "redis://env:6379"})); u != "redis://flag:6379" || src != "--redis" {
		t.Errorf("flag and env: %q %q", u, src)
	}
}

func TestNewRedisClientForms(t *testing.T) {
	for _, c := range []struct {
		url      string
		wantPool int
		check    func(redis.UniversalClient) bool
	}{
		{"redis://localhost:6379/2", 40, func(c redis.UniversalClient) bool {
			o := c.(*redis.Client).Options()
			return o.Addr == "localhost:6379" && o.DB == 2 && o.PoolSize == 40
		}},
		{"redis://localhost:6379?pool_size=7", 7, func(c redis.UniversalClient) bool {
			return c.(*redis.Client).Options().PoolSize == 7
		}},
		{"unix:///tmp/redis.sock?db=1", 40, func(c redis.UniversalClient) bool {
			o := c.(*redis.Client).Options()
			return o.Network == "unix" && o.Addr == "/tmp/redis.sock" && o.DB == 1
		}},
		{"redis://:pw@s1:26379?master_name=mymaster&addr=s2:26379", 40, func(c redis.UniversalClient) bool {
			o := c.(*redis.Client).Options()
			return o.Addr == "FailoverClient" && o.PoolSize == 40
		}},
		{"redis+cluster://n1:6379?addr=n2:6379", 40, func(c redis.UniversalClient) bool {
			o := c.(*redis.ClusterClient).Options()
			return len(o.Addrs) == 2 && o.PoolSize == 40
		}},
	} {
		c0, pw, err := newRedisClient(c.url, 40)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if !c.check(c0) {
			t.Errorf("%s: unexpected client options", c.url)
		}
		if strings.Contains(c.url, ":pw@") != (pw == "pw") {
			t.Errorf("%s: password %q", c.url, pw)
		}
		_ = c0.Close()
	}
	_, _, err := newRedisClient("redis://:hunter2@h:6379?bogus_option=1", 4)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad option: %v (must fail without showing the password)", err)
	}
	_, _, err = newRedisClient("ftp://h", 4)
	if err == nil {
		t.Error("ftp URL accepted")
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:secret@h:6379/0":    "redis://:xxxxx@h:6379/0",
		"redis://user:secret@h:6379":  "redis://user:xxxxx@h:6379",
		"redis://h:6379":              "redis://h:6379",
		"unix:///run/redis.sock":      "unix:///run/redis.sock",
		"redis://us er:secret@h%zz:1": "[REDACTED]@h%zz:1",
	} {
		if got := redactURL(in); got != want || strings.Contains(got, "secret") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConnectRedis(t *testing.T) {
	rs := redistest.Start(t)
	c, err := connectRedis(t.Context(), rs.URL(), "--redis", 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RDB.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()

	rs.Kill()
	_, err = connectRedis(t.Context(), "unix://"+rs.Socket, envRedisURL, 8)
	if err == nil || !strings.Contains(err.Error(), "(from "+envRedisURL+") does not answer") {
		t.Fatalf("dead server: %v", err)
	}
}

// Whatever follows the password in a Redis URL, an error about the URL
// never shows the password, and no input panics.
func FuzzRedisURLNeverShowsPassword(f *testing.F) {
	for _, s := range []string{"h:6379/0", "h:6379?master_name=m", "h:1/x/y", "h%zz:1", "[::1]:6379?pool_size=x", "h?addr=%"} {
		f.Add("redis", s)
		f.Add("redis+cluster", s)
	}
	f.Fuzz(func(t *testing.T, scheme, rest string) {
		raw := scheme + "://:t0psecretpw@" + rest
		c, _, err := newRedisClient(raw, 4)
		if err != nil {
			if strings.Contains(err.Error(), "t0psecretpw") {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		_ = c.Close()
		if strings.Contains(redactURL(raw), "t0psecretpw") {
			t.Fatalf("redactURL(%q) shows the password", raw)
		}
	})
}
