package pipelines

import (
	"fmt"
	"net/url"
	"strings"
)

// checkDelivery checks steps' reuse, output.publish, output.files,
// output.csv and notify.
func (c *checker) checkDelivery() {
	p := c.p
	for i, s := range p.Steps {
		if s.Reuse != ReuseUnchanged {
			continue
		}
		base := fmt.Sprintf("steps[%d]", i)
		if s.Thread.Per == PerRun && s.ForEach != "" {
			c.add(base+".reuse", "reuse: unchanged needs a thread per item: in a shared thread (thread.per: run) an answer depends on the items before it")
		}
		for _, name := range s.Artifacts {
			if set, ok := p.Artifacts[name]; ok && set.UsesAllArtifacts() {
				c.add(base+".reuse", "reuse: unchanged cannot tell whether the project changed: artifact set %q sends all_artifacts (list the folders instead)", name)
			}
		}
	}
	if pub := p.Output.Publish; pub != nil {
		if pub.Folder != "" {
			for _, part := range strings.Split(pub.Folder, "/") {
				if strings.TrimSpace(part) == "" {
					c.add("output.publish.folder", "%q has an empty folder name (write a path of folder names such as Reports/Support)", pub.Folder)
					break
				}
			}
		}
		c.checkTemplate("output.publish.name", pub.Name, tplScope{allSteps: c.stepIDs(), vars: p.Vars, forEachSets: c.forEachSets()})
	}
	if f := p.Output.Files; f != nil {
		step := p.FilesStep()
		s, ok := p.StepByID(step)
		switch {
		case f.Step != "" && !ok:
			msg := fmt.Sprintf("there is no step %q", f.Step)
			if sg := suggest(f.Step, c.stepIDs()); sg != "" {
				msg += fmt.Sprintf("; did you mean %q?", sg)
			}
			c.add("output.files.step", "%s", msg)
		case strings.TrimSpace(f.Name) == "":
			if c.has("output.files.name") {
				c.add("output.files.name", "must not be empty")
			} else if c.absent("output.files.name") {
				c.e.add(c.at("output.files"), "output.files: name is required (a template such as \"summaries/{{ .Artifact.Name }}.md\")")
			}
		case ok:
			c.checkTemplate("output.files.name", f.Name, tplScope{forEach: s.ForEach != "", allSteps: c.stepIDs(), vars: p.Vars, forEachSets: c.forEachSets()})
		}
	}
	if name := p.Output.CSV; c.has("output.csv") && (name == "" || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".")) {
		c.add("output.csv", "%q must be a plain file name such as items.csv (written into the run directory)", name)
	}
	for i, n := range p.Notify {
		base := fmt.Sprintf("notify[%d]", i)
		u, err := url.Parse(n.Webhook)
		switch {
		case strings.TrimSpace(n.Webhook) == "":
			if c.has(base + ".webhook") {
				c.add(base+".webhook", "must not be empty")
			} else if c.absent(base + ".webhook") {
				c.e.add(c.at(base), "%s: webhook is required (the URL to POST to)", base)
			}
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			c.add(base+".webhook", "must be an http or https URL")
		}
		for j, o := range n.On {
			c.oneOf(fmt.Sprintf("%s.on[%d]", base, j), o, NotifyOutcomes...)
		}
		if n.SecretEnv != "" && !identRe.MatchString(n.SecretEnv) {
			c.add(base+".secret_env", "%q must be the name of an environment variable (letters, digits and '_')", n.SecretEnv)
		}
	}
}
