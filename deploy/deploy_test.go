package deploy_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/threadmill/threadmill/deploy"
	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/metrics"
	"github.com/threadmill/threadmill/pipelines"
)

var update = flag.Bool("update", false, "rewrite the generated sections of docs/deploy.md")

const (
	composePath = "../docker-compose.yml"
	// redisPortPath is the override file that publishes Redis on the host.
	redisPortPath = "../docker-compose.redis-port.yml"
	dockerfile    = "../Dockerfile"
	deployDoc     = "../docs/deploy.md"
	alertsPath    = "prometheus/alerts.yml"
	promPath      = "prometheus/prometheus.yml"
)

func loadCompose(t *testing.T) (*deploy.Compose, []string) {
	t.Helper()
	c, vars, err := deploy.LoadCompose(composePath, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, vars
}

func TestInterpolate(t *testing.T) {
	env := map[string]string{"SET": "v", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	got, names, err := deploy.Interpolate([]byte("a=${SET} b=${UNSET:-d} c=${EMPTY:-d} d=${EMPTY-d} e=$$HOME f=${UNSET}"), lookup)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a=v b=d c=d d= e=$HOME f="; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !slices.Equal(names, []string{"EMPTY", "SET", "UNSET"}) {
		t.Errorf("names = %v", names)
	}
	if _, _, err := deploy.Interpolate([]byte("${TOKEN:?set the token}"), lookup); err == nil || !strings.Contains(err.Error(), "TOKEN is not set: set the token") {
		t.Errorf("required variable: %v", err)
	}
}

func TestComposeServices(t *testing.T) {
	c, _ := loadCompose(t)
	for _, name := range []string{"redis", "scheduler", "worker", "simulator", "asynqmon"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("service %q missing", name)
		}
	}

	redis := c.Services["redis"]
	if !hasSeq(redis.Command, "--appendonly", "yes") {
		t.Errorf("redis command %v: want --appendonly yes", redis.Command)
	}
	if !slices.Contains(redis.Volumes, "redis-data:/data") || c.Volumes == nil {
		t.Errorf("redis volumes %v: want the named volume redis-data on /data", redis.Volumes)
	}
	if _, ok := c.Volumes["redis-data"]; !ok {
		t.Error("volume redis-data is not declared")
	}
	if redis.Healthcheck == nil || len(redis.Healthcheck.Test) != 2 || redis.Healthcheck.Test[0] != "CMD-SHELL" ||
		!strings.Contains(redis.Healthcheck.Test[1], "PONG") {
		t.Errorf("redis healthcheck %+v: want a shell check for PONG (TestRedisHealthcheck runs it)", redis.Healthcheck)
	}
	if len(redis.Ports) != 0 {
		t.Errorf("redis publishes %v on the host by default; publish it only with %s", redis.Ports, redisPortPath)
	}
	over, _, err := deploy.LoadCompose(redisPortPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(over.Services) != 1 || !slices.Equal(over.Services["redis"].Ports, []string{"127.0.0.1:6379:6379"}) {
		t.Errorf("%s: want only redis on 127.0.0.1:6379, got %+v", redisPortPath, over.Services)
	}

	// The threadmill image is built once, with the VERSION argument; the
	// other services that run it neither build nor pull it.
	builds := 0
	for name, s := range c.Services {
		if !strings.HasPrefix(s.Image, "threadmill:") {
			continue
		}
		switch b, _ := s.Build.(map[string]any); {
		case b != nil:
			args, _ := b["args"].(map[string]any)
			if b["context"] != "." || args["VERSION"] != "dev" {
				t.Errorf("%s: build %v: want context . and args.VERSION", name, s.Build)
			}
			builds++
		case s.Build != nil:
			t.Errorf("%s: build %v: want the shared build section", name, s.Build)
		case s.PullPolicy != "never":
			t.Errorf("%s runs the local image without building it: want pull_policy: never, got %q", name, s.PullPolicy)
		}
	}
	if builds == 0 {
		t.Error("no service builds the threadmill image")
	}

	for _, name := range []string{"scheduler", "worker"} {
		s := c.Services[name]
		if s.DependsOn["redis"].Condition != "service_healthy" {
			t.Errorf("%s must wait for a healthy redis, depends_on = %+v", name, s.DependsOn)
		}
		for _, v := range []string{"THREADMILL_REDIS_URL", "WORKSPACE_BASE_URL", "WORKSPACE_ORG", "WORKSPACE_API_TOKEN"} {
			if _, ok := s.Environment[v]; !ok {
				t.Errorf("%s: environment lacks %s", name, v)
			}
		}
		if !strings.HasPrefix(s.Environment["THREADMILL_REDIS_URL"], "redis://redis:6379") {
			t.Errorf("%s: THREADMILL_REDIS_URL = %q, want the redis service", name, s.Environment["THREADMILL_REDIS_URL"])
		}
		if !slices.Contains(s.Command, "--metrics-addr=:9090") || !slices.Contains(s.Expose, "9090") {
			t.Errorf("%s: want --metrics-addr=:9090 and port 9090 exposed; command %v expose %v", name, s.Command, s.Expose)
		}
		if s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, []string{"CMD", "/usr/local/bin/threadmill", "healthcheck", "http://127.0.0.1:9090/readyz"}) {
			t.Errorf("%s: healthcheck %+v: want threadmill healthcheck on /readyz", name, s.Healthcheck)
		}
		if len(s.Profiles) != 0 {
			t.Errorf("%s must start without a profile, has %v", name, s.Profiles)
		}
	}

	w := c.Services["worker"]
	if w.ContainerName != "" || len(w.Ports) != 0 {
		t.Errorf("worker must be scalable (no container_name, no host ports): %q %v", w.ContainerName, w.Ports)
	}
	if !slices.Contains(w.Volumes, "results:"+imageResults) || !slices.Contains(w.Command, "--results="+imageResults) {
		t.Errorf("worker must write results to the shared volume: volumes %v command %v", w.Volumes, w.Command)
	}
	if _, ok := c.Volumes["results"]; !ok {
		t.Error("volume results is not declared")
	}

	sim := c.Services["simulator"]
	if !slices.Contains(sim.Profiles, "simulator") {
		t.Errorf("simulator profiles = %v, want [simulator]", sim.Profiles)
	}
	if sim.Environment["WORKSPACE_API_TOKEN"] != w.Environment["WORKSPACE_API_TOKEN"] {
		t.Error("the simulator must require the token the workers send")
	}
	if !strings.HasSuffix(w.Environment["WORKSPACE_BASE_URL"], "//simulator:8080") || !slices.Contains(sim.Command, "--addr=0.0.0.0:8080") {
		t.Errorf("workers' default base URL %q must reach the simulator (%v)", w.Environment["WORKSPACE_BASE_URL"], sim.Command)
	}

	mon := c.Services["asynqmon"]
	if !strings.HasPrefix(mon.Image, "hibiken/asynqmon:") || !slices.Contains(mon.Ports, "127.0.0.1:8081:8080") {
		t.Errorf("asynqmon: image %q ports %v; want hibiken/asynqmon on 127.0.0.1:8081", mon.Image, mon.Ports)
	}
	if mon.Environment["REDIS_ADDR"] != "redis:6379" {
		t.Errorf("asynqmon REDIS_ADDR = %q", mon.Environment["REDIS_ADDR"])
	}
}

// TestComposeVariablesDocumented checks that every variable the compose
// file reads is listed in docs/deploy.md, and the other way round.
func TestComposeVariablesDocumented(t *testing.T) {
	_, vars := loadCompose(t)
	_, more, err := deploy.LoadCompose(redisPortPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	vars = append(vars, more...)
	slices.Sort(vars)
	vars = slices.Compact(vars)
	doc := readFile(t, deployDoc)
	table := section(t, doc, "compose-env")
	documented := regexp.MustCompile("(?m)^\\| `([A-Z_][A-Z0-9_]*)`").FindAllStringSubmatch(table, -1)
	var names []string
	for _, m := range documented {
		names = append(names, m[1])
	}
	slices.Sort(names)
	for _, v := range vars {
		if !slices.Contains(names, v) {
			t.Errorf("the compose files read %s, which docs/deploy.md does not list", v)
		}
	}
	for _, v := range names {
		if !slices.Contains(vars, v) {
			t.Errorf("docs/deploy.md lists %s, which no compose file reads", v)
		}
	}
}

// TestDockerComposeConfig runs the real `docker compose config` when a
// compose client is installed (.ci/run installs one).
func TestDockerComposeConfig(t *testing.T) {
	var cmd []string
	if exec.Command("docker", "compose", "version").Run() == nil {
		cmd = []string{"docker", "compose"}
	} else if p, err := exec.LookPath("docker-compose"); err == nil {
		cmd = []string{p}
	} else {
		if os.Getenv("CI") != "" {
			t.Fatal("no docker compose client on CI: .ci/run should install one")
		}
		t.Skip("no docker compose client installed")
	}
	for _, files := range [][]string{
		{"-f", composePath},
		{"-f", composePath, "--profile", "simulator", "--profile", "tools", "--profile", "monitoring"},
		{"-f", composePath, "-f", redisPortPath},
	} {
		args := append(slices.Clone(cmd[1:]), files...)
		args = append(args, "config", "-q")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, cmd[0], args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s %s: %v\n%s", cmd[0], strings.Join(args, " "), err, out)
		}
	}
}

// imageResults is the results directory of the image: the default results
// root from the image's working directory, a volume.
var imageResults = path.Join("/var/lib/threadmill", pipelines.DefaultOutputDir)

func TestDockerfile(t *testing.T) {
	text := readFile(t, dockerfile)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, found %d FROM lines", len(froms))
	}
	final := froms[len(froms)-1][1]
	if !strings.Contains(final, "distroless/static") && final != "scratch" {
		t.Errorf("final stage %s: want a static, shell-less base", final)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-tags timetzdata", "./cmd/threadmill", `ENTRYPOINT ["/usr/local/bin/threadmill"]`} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(user) == 0 || strings.HasPrefix(user[len(user)-1][1], "0") || strings.HasPrefix(user[len(user)-1][1], "root") {
		t.Errorf("the image must run as a non-root user, USER lines: %v", user)
	}
	// Every command run in the image writes results to the volume, with or
	// without --results; the scheduler finds the pipelines without
	// --pipelines.
	workdir := regexp.MustCompile(`(?m)^WORKDIR\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(workdir) == 0 || path.Join(workdir[len(workdir)-1][1], pipelines.DefaultOutputDir) != imageResults {
		t.Errorf("WORKDIR %v: want the default results root %s to be %s", workdir, pipelines.DefaultOutputDir, imageResults)
	}
	for _, want := range []string{`VOLUME ["` + imageResults + `"]`, "mkdir -p /out" + imageResults, "ENV THREADMILL_PIPELINES=/etc/threadmill/pipelines", "cp examples/*.yaml /out/etc/threadmill/pipelines/"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// TestDockerBuildContextBuilds checks the build context builds.
}

// populated returns a registry in which every threadmill metric has a
// series, and the names the registry describes.
func populated(t *testing.T) (*prometheus.Registry, []string) {
	t.Helper()
	m := metrics.New(metrics.Options{NoRuntimeCollectors: true})
	m.ItemStarted("p")
	m.ItemFinished("p", "s", metrics.StateSucceeded, time.Second)
	m.ItemRetried("p", "s", "rate_limited")
	m.TokensUsed("p", "s", 1, 1)
	m.RateLimitWaited("p", "requests", time.Second)
	m.RunFinished("p", "succeeded")
	m.SchedulerFired("p", "created")
	m.SchedulerSkipped("p", "overlap")
	m.SchedulerSynced(time.Now(), 1, 0)
	rt := m.InstrumentTransport(roundTripFunc(func() {}))
	_, _ = rt.RoundTrip(mustRequest(t))
	reg := m.Registry()
	reg.MustRegister(metrics.NewQueueCollector(fakeInspector{}, []string{"threadmill"}, nil))

	ch := make(chan *prometheus.Desc, 256)
	go func() { reg.Describe(ch); close(ch) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	var described []string
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			described = append(described, m[1])
		}
	}
	slices.Sort(described)
	return reg, described
}

func TestMetricsReferenceUpToDate(t *testing.T) {
	reg, described := populated(t)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var gathered []string
	for _, f := range fams {
		gathered = append(gathered, f.GetName())
	}
	if !slices.Equal(gathered, described) {
		t.Fatalf("populated() misses metrics: gathered %v, described %v", gathered, described)
	}
	got := metricsTable(fams)
	doc := readFile(t, deployDoc)
	if *update {
		writeSection(t, deployDoc, doc, "metrics", got)
		return
	}
	if section(t, doc, "metrics") != got {
		t.Errorf("docs/deploy.md's metrics table is out of date: run go test ./deploy -run TestMetricsReference -update\nwant:\n%s", got)
	}
}

func metricsTable(fams []*dto.MetricFamily) string {
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n")
	for _, f := range fams {
		var labels []string
		if ms := f.GetMetric(); len(ms) > 0 {
			for _, l := range ms[0].GetLabel() {
				labels = append(labels, l.GetName())
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.GetName(), strings.ToLower(f.GetType().String()),
			strings.Join(labels, ", "), strings.ReplaceAll(f.GetHelp(), "|", "\\|"))
	}
	return b.String()
}

// TestAlertRules checks the alert rules parse, are complete, and query only
// metrics that exist.
func TestAlertRules(t *testing.T) {
	_, described := populated(t)
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, alertsPath)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatal(err)
	}
	doc := readFile(t, deployDoc)
	name := regexp.MustCompile(`\bthreadmill_[a-z0-9_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: want alert, expr, for, labels.severity and annotations.summary", r)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			for _, m := range name.FindAllString(r.Expr, -1) {
				base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
				if !slices.Contains(described, m) && !slices.Contains(described, base) {
					t.Errorf("%s queries %s, which threadmill does not export", r.Alert, m)
				}
			}
			if !strings.Contains(doc, "`"+r.Alert+"`") {
				t.Errorf("alert %s is not explained in docs/deploy.md", r.Alert)
			}
			if rb := r.Annotations["runbook"]; rb != "" {
				checkAnchor(t, rb)
			}
		}
	}
	if n < 5 {
		t.Errorf("only %d alert rules", n)
	}
	prom := readFile(t, promPath)
	for _, job := range []string{"names: [worker]", "names: [scheduler]", "/etc/prometheus/alerts.yml"} {
		if !strings.Contains(prom, job) {
			t.Errorf("prometheus.yml lacks %q", job)
		}
	}
}

// checkAnchor checks that "docs/x.md#anchor" names a file and a heading.
func checkAnchor(t *testing.T, ref string) {
	t.Helper()
	file, anchor, _ := strings.Cut(ref, "#")
	text := readFile(t, filepath.Join("..", file))
	if anchor == "" {
		return
	}
	for _, line := range strings.Split(text, "\n") {
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") && slug(h) == anchor {
			return
		}
	}
	t.Errorf("%s: no heading with anchor #%s", file, anchor)
}

// slug is GitHub's heading anchor: lower case, spaces to dashes, most
// punctuation dropped.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the text between <!-- name:begin --> and <!-- name:end -->.
func section(t *testing.T, doc, name string) string {
	t.Helper()
	begin, end := "<!-- "+name+":begin -->\n", "<!-- "+name+":end -->"
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("docs/deploy.md lacks the markers %q and %q", strings.TrimSpace(begin), end)
	}
	return doc[i+len(begin) : j]
}

func writeSection(t *testing.T, path, doc, name, body string) {
	t.Helper()
	old := section(t, doc, name)
	i := strings.Index(doc, "<!-- "+name+":begin -->\n") + len("<!-- "+name+":begin -->\n")
	doc = doc[:i] + body + doc[i+len(old):]
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hasSeq(s []string, a, b string) bool {
	i := slices.Index(s, a)
	return i >= 0 && i+1 < len(s) && s[i+1] == b
}

type fakeInspector struct{}

func (fakeInspector) Queues() ([]string, error) { return []string{"threadmill"}, nil }
func (fakeInspector) GetQueueInfo(q string) (*asynq.QueueInfo, error) {
	return &asynq.QueueInfo{Queue: q, Pending: 1}, nil
}

type roundTripFunc func()

func (f roundTripFunc) RoundTrip(*http.Request) (*http.Response, error) {
	f()
	return &http.Response{StatusCode: 429, Body: http.NoBody}, nil
}

func mustRequest(t *testing.T) *http.Request {
	t.Helper()
	r, err := http.NewRequest("POST", "http://x/api/v1/app/chat/validate", nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRedisHealthcheck runs the redis service's health check, as the
// container would, against a private redis-server (redis-cli is pointed at
// its socket by a shim first on PATH): healthy when Redis answers PONG,
// unhealthy when it answers an error such as NOAUTH, on which a bare
// `redis-cli ping` still exits 0.
func TestRedisHealthcheck(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("no redis-cli")
	}
	c, _ := loadCompose(t)
	hc := c.Services["redis"].Healthcheck
	srv := redistest.Start(t)
	shim := t.TempDir()
	script := "#!/bin/sh\nexec " + cli + " -s " + srv.Socket + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(shim, "redis-cli"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+shim+string(os.PathListSeparator)+os.Getenv("PATH"))
	check := func(test []string) error {
		var cmd *exec.Cmd
		switch test[0] {
		case "CMD":
			cmd = exec.Command(test[1], test[2:]...)
		case "CMD-SHELL":
			cmd = exec.Command("sh", "-c", test[1])
		default:
			t.Fatalf("healthcheck %v: unknown form", test)
		}
		cmd.Env = env
		return cmd.Run()
	}
	if err := check(hc.Test); err != nil {
		t.Fatalf("healthcheck %v fails on a ready Redis: %v", hc.Test, err)
	}
	if err := srv.Client(t).ConfigSet(context.Background(), "requirepass", "secret").Err(); err != nil {
		t.Fatal(err)
	}
	if err := check([]string{"CMD", "redis-cli", "ping"}); err != nil {
		t.Fatalf("the shim is broken: plain redis-cli ping should exit 0 on NOAUTH: %v", err)
	}
	if err := check(hc.Test); err == nil {
		t.Errorf("healthcheck %v passes while Redis answers NOAUTH", hc.Test)
	}
}
