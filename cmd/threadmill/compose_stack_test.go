package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/threadmill/threadmill/deploy"
	"github.com/threadmill/threadmill/internal/redistest"
	"github.com/threadmill/threadmill/results"
)

// composeStack runs the threadmill services of docker-compose.yml as local
// processes, as close to the containers as a machine without a Docker
// engine allows: each service's command and environment, read from the
// compose file with its defaults, with only what a container would have
// differently rewritten: the Redis and simulator hostnames (a private
// redis-server, a local port), the ports each container would have to
// itself (a free local port each), and the paths of mounts (to the host
// directories or temporary directories for named volumes).
type composeStack struct {
	t        *testing.T
	c        *deploy.Compose
	repoRoot string
	volumes  map[string]string // named volume -> temp dir
	ports    map[string]string // service -> its free local port
}

// freePorts returns n distinct ports free on 127.0.0.1 now: each is held
// until all are picked, as a port closed at once can be handed out again
// (two services given one port: the second could not listen, and the first
// answered its health check).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	ports := make([]string, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, ports[i], _ = net.SplitHostPort(l.Addr().String())
	}
	return ports
}

// addrRe matches the listen addresses of the compose commands and health
// checks: --addr=0.0.0.0:8080, --metrics-addr=:9090, http://127.0.0.1:9090/.
var addrRe = regexp.MustCompile(`(=0\.0\.0\.0:|=:|//127\.0\.0\.1:)(\d+)`)

// local rewrites one argument of service name: its listen port to the
// service's own local port, and mount targets to their host paths.
func (s *composeStack) local(name, arg string) string {
	arg = addrRe.ReplaceAllString(arg, "${1}"+s.ports[name])
	arg = strings.Replace(arg, "=0.0.0.0:", "=127.0.0.1:", 1)
	arg = strings.Replace(arg, "=:"+s.ports[name], "=127.0.0.1:"+s.ports[name], 1)
	for _, v := range s.c.Services[name].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		src, dst := parts[0], parts[1]
		host, ok := s.volumes[src]
		if !ok {
			host = filepath.Join(s.repoRoot, filepath.FromSlash(src))
		}
		if arg == dst || strings.HasPrefix(arg, dst+"/") {
			return host + arg[len(dst):]
		}
		if i := strings.Index(arg, "="+dst); i >= 0 && (len(arg) == i+1+len(dst) || arg[i+1+len(dst)] == '/') {
			return arg[:i+1] + host + arg[i+1+len(dst):]
		}
	}
	return arg
}

// start starts a service as a process with the service's environment: its
// command, or command, as `docker compose run SERVICE COMMAND...` would.
func (s *composeStack) start(name string, command ...string) *proc {
	svc := s.c.Services[name]
	if len(command) == 0 {
		command = svc.Command
	}
	var args []string
	for _, a := range command {
		args = append(args, s.local(name, a))
	}
	s.t.Logf("%s: threadmill %s", name, strings.Join(args, " "))
	return startThreadmill(s.t, svc.Environment, args...)
}

// waitHealthy runs the service's compose health check until it passes.
func (s *composeStack) waitHealthy(name string, p *proc) {
	s.t.Helper()
	hc := s.c.Services[name].Healthcheck
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/usr/local/bin/threadmill" {
		s.t.Fatalf("%s: health check %+v is not `threadmill healthcheck`", name, hc)
	}
	var args []string
	for _, a := range hc.Test[2:] {
		args = append(args, s.local(name, a))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command(threadmillBin, args...).CombinedOutput()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			s.t.Fatalf("%s exited (%v) before it was healthy\nstderr:\n%s", name, p.err, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: threadmill %s still fails after a minute: %v\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, p.stderr)
		}
		time.Sleep(100 * time.Millisecond) // polling the health check, as Docker does, bounded by deadline
	}
}

// TestComposeStackAsProcesses starts the simulator, scheduler and worker
// services of docker-compose.yml as processes with the compose environment
// and commands, waits for each one's compose health check, then runs the
// weekly example end to end through the cli service (`enqueue --wait`) and
// checks the result files the worker wrote into the results volume.
func TestComposeStackAsProcesses(t *testing.T) {
	srv := redistest.Start(t)
	s := &composeStack{t: t, repoRoot: "../..", volumes: map[string]string{}, ports: map[string]string{}}
	names := []string{"simulator", "scheduler", "worker", "cli"}
	for i, port := range freePorts(t, len(names)) {
		s.ports[names[i]] = port
	}
	env := map[string]string{
		"THREADMILL_REDIS_URL": srv.URL(),
		"WORKSPACE_BASE_URL":   "http://127.0.0.1:" + s.ports["simulator"],
	}
	c, _, err := deploy.LoadCompose("../../docker-compose.yml", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	s.c = c
	for name := range c.Volumes {
		s.volumes[name] = t.TempDir()
	}

	sim := s.start("simulator")
	s.waitHealthy("simulator", sim)
	sched := s.start("scheduler")
	s.waitHealthy("scheduler", sched)
	work := s.start("worker")
	s.waitHealthy("worker", work)

	// The scheduler scheduled the examples of the mounted directory.
	readyz := "http://127.0.0.1:" + s.ports["scheduler"] + "/readyz"
	if out, err := exec.Command(threadmillBin, "healthcheck", readyz).CombinedOutput(); err != nil {
		t.Fatalf("scheduler /readyz: %v\n%s", err, out)
	}
	if !strings.Contains(sched.stderr.String(), `"dir_source":"--pipelines"`) {
		t.Errorf("the scheduler's log does not say where its directory came from:\n%s", sched.stderr)
	}

	// docker compose run --rm cli enqueue --wait /etc/threadmill/pipelines/weekly-support-brief.yaml
	cli := s.start("cli", "enqueue", "--wait", "--progress", "none", "--run-id", "compose-1", "/etc/threadmill/pipelines/weekly-support-brief.yaml")
	if code := cli.wait(t, 3*time.Minute); code != exitOK {
		t.Fatalf("cli enqueue: exit %d\nstdout:\n%s\nstderr:\n%s\nworker:\n%s", code, cli.stdout, cli.stderr, work.stderr)
	}
	runDir := filepath.Join(s.volumes["results"], "weekly-support-brief", "compose-1")
	run, err := results.ReadRun(runDir)
	if err != nil {
		t.Fatalf("the worker wrote no run into the results volume: %v\ncli:\n%s%s\nworker:\n%s", err, cli.stdout, cli.stderr, work.stderr)
	}
	if run.Status != "succeeded" || run.Total == 0 || run.Counts[results.StateSucceeded] != run.Total {
		t.Errorf("run.json: status %s, %d items, counts %v", run.Status, run.Total, run.Counts)
	}
	t.Logf("run %s: %s, %d items %v, %d tokens", run.RunID, run.Status, run.Total, run.Counts, run.Usage.Total())
	if b, err := os.ReadFile(filepath.Join(runDir, results.ReportFile)); err != nil || len(b) == 0 {
		t.Errorf("report.md: %v", err)
	}
	// Every service is still healthy after the run.
	for name, p := range map[string]*proc{"simulator": sim, "scheduler": sched, "worker": work} {
		s.waitHealthy(name, p)
	}
}
