// Package deploy holds threadmill's deployment files besides the Dockerfile
// and docker-compose.yml at the repository root (Prometheus scrape config
// and alert rules under deploy/prometheus), and a reader for the compose
// file that the tests use to keep all of them in line with the code: the
// commands and flags the services run, the metrics the alerts query, the
// environment variables the docs list.
package deploy

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"
)

// Compose is the part of a docker-compose file threadmill's tests read.
type Compose struct {
	Services map[string]Service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

// Service is one service of a compose file.
type Service struct {
	Image           string               `yaml:"image"`
	Build           any                  `yaml:"build"`
	Command         []string             `yaml:"command"`
	Entrypoint      []string             `yaml:"entrypoint"`
	Environment     map[string]string    `yaml:"environment"`
	Volumes         []string             `yaml:"volumes"`
	Ports           []string             `yaml:"ports"`
	Expose          []string             `yaml:"expose"`
	Profiles        []string             `yaml:"profiles"`
	Healthcheck     *Healthcheck         `yaml:"healthcheck"`
	DependsOn       map[string]DependsOn `yaml:"depends_on"`
	ContainerName   string               `yaml:"container_name"`
	Restart         string               `yaml:"restart"`
	PullPolicy      string               `yaml:"pull_policy"`
	StopGracePeriod string               `yaml:"stop_grace_period"`
}

// Healthcheck is a service's health check.
type Healthcheck struct {
	Test     []string `yaml:"test"`
	Disable  bool     `yaml:"disable"`
	Interval string   `yaml:"interval"`
}

// DependsOn is one long-form depends_on entry.
type DependsOn struct {
	Condition string `yaml:"condition"`
}

// varRef matches ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?err}
// and ${NAME?err}, and the escape $$.
var varRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// Interpolate replaces variable references as compose does, reading values
// from lookup. It returns the text and the names referenced, sorted. A
// required variable (${X:?msg}) that lookup lacks is an error.
func Interpolate(text []byte, lookup func(string) (string, bool)) ([]byte, []string, error) {
	var names []string
	var firstErr error
	out := varRef.ReplaceAllFunc(text, func(m []byte) []byte {
		if string(m) == "$$" {
			return []byte("$")
		}
		sub := varRef.FindSubmatch(m)
		name, op, arg := string(sub[1]), string(sub[2]), string(sub[3])
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		v, ok := lookup(name)
		switch op {
		case ":-":
			if !ok || v == "" {
				v = arg
			}
		case "-":
			if !ok {
				v = arg
			}
		case ":?", "?":
			if !ok || (op == ":?" && v == "") {
				if firstErr == nil {
					firstErr = fmt.Errorf("required variable %s is not set: %s", name, arg)
				}
			}
		}
		return []byte(v)
	})
	slices.Sort(names)
	return out, names, firstErr
}

// LoadCompose reads a compose file, interpolates it with lookup (nil: no
// variable is set, so defaults apply) and decodes it, merge keys and
// anchors included.
func LoadCompose(path string, lookup func(string) (string, bool)) (*Compose, []string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if lookup == nil {
		lookup = func(string) (string, bool) { return "", false }
	}
	text, names, err := Interpolate(raw, lookup)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var c Compose
	dec := yaml.NewDecoder(bytes.NewReader(text))
	if err := dec.Decode(&c); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, names, nil
}
