package main

// Checks of the packaging files: the Dockerfile, compose.yaml and the Kubernetes
// manifests in deploy/kubernetes/. Nothing here runs Docker or Kubernetes; each
// file is parsed and what matters is asserted, above all that serve accepts every
// node's whole configuration as the file gives it.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/miyamotohq/miyamoto/bench/readme"
	"github.com/miyamotohq/miyamoto/net/daemon"
)

const repoRoot = "../.."

// serveFlagNames is every flag serve defines, read from its usage.
func serveFlagNames(t *testing.T) map[string]bool {
	t.Helper()
	_, _, err := parseServe([]string{"-h"}, envOf())
	var u usageError
	require.True(t, errors.As(err, &u), "serve -h gives its usage")
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(u.usage, -1) {
		names[m[1]] = true
	}
	require.Contains(t, names, "node-id")
	require.Contains(t, names, "peers")
	return names
}

// requireServeFlags checks that every --flag in args and every MIYAMOTO_*
// variable in env is one of serve's, naming the first that is not.
func requireServeFlags(t *testing.T, where string, args []string, env map[string]string) {
	t.Helper()
	known := serveFlagNames(t)
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		require.True(t, known[name], "%s: --%s is not a serve flag", where, name)
	}
	for k := range env {
		name, ok := strings.CutPrefix(k, "MIYAMOTO_")
		require.True(t, ok, "%s: %s is not a MIYAMOTO_* variable", where, k)
		flag := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		require.True(t, known[flag], "%s: %s names no serve flag (--%s)", where, k, flag)
	}
}

// parseNode is parseServe on a node's arguments and environment, which must be
// accepted.
func parseNode(t *testing.T, where string, args []string, env map[string]string) daemon.Config {
	t.Helper()
	requireServeFlags(t, where, args, env)
	cfg, _, err := parseServe(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	require.NoError(t, err, "%s: serve refuses the configuration", where)
	return cfg
}

// dockerInstruction is one Dockerfile instruction, continuation lines joined.
type dockerInstruction struct {
	cmd, args string
	stage     int // index of the FROM it follows
}

func readDockerfile(t *testing.T) []dockerInstruction {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	var out []dockerInstruction
	stage := -1
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if more, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(more + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstruction{cmd: cmd, args: strings.Join(strings.Fields(args), " "), stage: stage})
	}
	require.NoError(t, sc.Err())
	return out
}

// dockerEnv is the variables the final stage's ENV instructions set.
func dockerEnv(t *testing.T, ins []dockerInstruction) map[string]string {
	t.Helper()
	last := ins[len(ins)-1].stage
	env := map[string]string{}
	for _, in := range ins {
		if in.cmd != "ENV" || in.stage != last {
			continue
		}
		for _, kv := range strings.Fields(in.args) {
			k, v, ok := strings.Cut(kv, "=")
			require.True(t, ok, "ENV %s: write KEY=value", in.args)
			env[k] = v
		}
	}
	return env
}

func TestDockerfile(t *testing.T) {
	ins := readDockerfile(t)
	final := ins[len(ins)-1].stage
	require.GreaterOrEqual(t, final, 1, "a multi-stage build: the toolchain stays out of the image")
	one := func(cmd string) dockerInstruction {
		t.Helper()
		var found []dockerInstruction
		for _, in := range ins {
			if in.cmd == cmd && in.stage == final {
				found = append(found, in)
			}
		}
		require.Len(t, found, 1, "the final stage has one %s", cmd)
		return found[0]
	}

	// The build stage makes a static binary of cmd/miyamoto, naming the version.
	var build string
	for _, in := range ins {
		if in.cmd == "RUN" && in.stage < final && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	require.Contains(t, build, "CGO_ENABLED=0", "static: the final image has no C library")
	require.Contains(t, build, "./cmd/miyamoto")
	require.Contains(t, build, "-X "+versionVariable+"=${VERSION}")
	require.Contains(t, ins, dockerInstruction{cmd: "ARG", args: `VERSION=""`, stage: 0})

	from := one("FROM").args
	require.True(t, strings.HasPrefix(from, "gcr.io/distroless/static") || from == "scratch", "a minimal final image, not %s", from)
	user := one("USER").args
	uid, _, _ := strings.Cut(user, ":")
	require.NotContains(t, []string{"", "0", "root"}, uid, "the node does not run as root")
	require.Equal(t, "65532:65532", user, "distroless's nonroot, who owns /data")
	require.Equal(t, `["/data"]`, one("VOLUME").args)
	require.ElementsMatch(t, []string{"8088", "7088"}, strings.Fields(one("EXPOSE").args))
	require.Equal(t, `["/usr/local/bin/miyamoto", "serve"]`, one("ENTRYPOINT").args)

	var copies []string
	for _, in := range ins {
		if in.cmd == "COPY" && in.stage == final {
			copies = append(copies, in.args)
		}
	}
	require.Contains(t, copies, "--from=build /out/miyamoto /usr/local/bin/miyamoto", "the entrypoint is the built binary")
	require.Contains(t, copies, "--from=build --chown=65532:65532 /out/data /data", "/data belongs to the node's user")

	// The image's own configuration is one serve accepts, listening beyond loopback.
	cfg := parseNode(t, "Dockerfile ENV", nil, dockerEnv(t, ins))
	require.Equal(t, "0.0.0.0:8088", cfg.HTTPAddr)
	require.Equal(t, "0.0.0.0:7088", cfg.PeerAddr)
	require.Equal(t, "/data", cfg.DataDir)
}

// composeFile is what TestCompose reads of compose.yaml.
type composeFile struct {
	Services map[string]struct {
		Build           string            `yaml:"build"`
		Image           string            `yaml:"image"`
		Restart         string            `yaml:"restart"`
		Command         []string          `yaml:"command"`
		Environment     map[string]string `yaml:"environment"`
		Ports           []string          `yaml:"ports"`
		Volumes         []string          `yaml:"volumes"`
		StopGracePeriod string            `yaml:"stop_grace_period"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// composeRequired matches ${VAR:?message}: a variable compose refuses to run without.
var composeRequired = regexp.MustCompile(`^\$\{([A-Z_]+):\?[^}]*\}$`)

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "compose.yaml"))
	require.NoError(t, err)
	var c composeFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true) // a misspelt key fails here rather than being ignored by compose
	require.NoError(t, dec.Decode(&c))
	return c
}

func TestCompose(t *testing.T) {
	c := readCompose(t)
	docker := dockerEnv(t, readDockerfile(t))
	require.Len(t, c.Services, 3, "a three-node cluster")
	ids := map[string]string{}    // node ID -> service
	mounts := map[string]string{} // volume -> service
	ports := map[string]bool{}
	var peers []string
	for name, s := range c.Services {
		require.Equal(t, ".", s.Build, name)
		require.Equal(t, "unless-stopped", s.Restart, name)
		// The node's environment: the image's, then the service's, each required
		// secret given a value as compose would take it from the shell.
		env := map[string]string{}
		for k, v := range docker {
			env[k] = v
		}
		for k, v := range s.Environment {
			m := composeRequired.FindStringSubmatch(v)
			require.NotNil(t, m, "%s: %s is a secret: take it from the environment with ${%s:?...}, not %q", name, k, k, v)
			require.Equal(t, k, m[1], name)
			env[k] = "value-of-" + k + "-0123456789"
		}
		require.Contains(t, s.Environment, "MIYAMOTO_CLUSTER_SECRET", name)
		require.Contains(t, s.Environment, "MIYAMOTO_API_TOKEN", name)
		cfg := parseNode(t, "compose.yaml "+name, s.Command, env)
		require.NotContains(t, ids, cfg.NodeID, "node IDs must differ")
		ids[cfg.NodeID] = name
		require.Equal(t, "0.0.0.0:8088", cfg.HTTPAddr, name)
		require.Equal(t, "/data", cfg.DataDir, name)
		require.Len(t, cfg.Peers, 3, name)
		peers = append(peers, fmt.Sprint(cfg.Peers))

		require.Len(t, s.Volumes, 1, name)
		vol, path, _ := strings.Cut(s.Volumes[0], ":")
		require.Equal(t, "/data", path, name)
		require.Contains(t, c.Volumes, vol, "%s: the volume is declared", name)
		require.NotContains(t, mounts, vol, "each node its own volume")
		mounts[vol] = name

		require.Len(t, s.Ports, 1, name)
		require.Regexp(t, `^127\.0\.0\.1:808[1-3]:8088$`, s.Ports[0], "%s: the API on loopback only", name)
		require.False(t, ports[s.Ports[0]], "%s: a port published twice", name)
		ports[s.Ports[0]] = true
		require.Equal(t, "30s", s.StopGracePeriod, "%s: more than --shutdown-timeout", name)
	}
	// Every node has the same peers, and each peer is a node: its ID, at its
	// service's name, on the image's peer port.
	require.Equal(t, peers[0], peers[1])
	require.Equal(t, peers[0], peers[2])
	// With its secret, as every service has it: the image's peer port listens
	// beyond loopback, which serve refuses without one.
	docker["MIYAMOTO_CLUSTER_SECRET"] = "value-of-MIYAMOTO_CLUSTER_SECRET-0123456789"
	cfg := parseNode(t, "compose.yaml node1", c.Services["node1"].Command, docker)
	for id, addr := range cfg.Peers {
		require.Contains(t, ids, id, "--peers names %s, which no service is", id)
		require.Equal(t, ids[id]+":7088", addr)
	}
}

// Kubernetes objects: only the fields the test reads.
type k8sMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type k8sService struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sEnv struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []k8sEnv `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  k8sProbe `yaml:"livenessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
}

type k8sStatefulSet struct {
	Metadata k8sMeta `yaml:"metadata"`
	Spec     struct {
		ServiceName         string `yaml:"serviceName"`
		Replicas            int    `yaml:"replicas"`
		PodManagementPolicy string `yaml:"podManagementPolicy"`
		Selector            struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
					FSGroup      int  `yaml:"fsGroup"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				AccessModes []string `yaml:"accessModes"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

// k8sManifests is every object in deploy/kubernetes/*.yaml, by kind and name.
type k8sManifests struct {
	services     map[string]k8sService
	statefulSets map[string]k8sStatefulSet
	kinds        map[string][]string // kind -> names
}

func readKubernetes(t *testing.T) k8sManifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "kubernetes", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	m := k8sManifests{services: map[string]k8sService{}, statefulSets: map[string]k8sStatefulSet{}, kinds: map[string][]string{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		for {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
			var head struct {
				APIVersion string  `yaml:"apiVersion"`
				Kind       string  `yaml:"kind"`
				Metadata   k8sMeta `yaml:"metadata"`
			}
			require.NoError(t, doc.Decode(&head), f)
			require.NotEmpty(t, head.APIVersion, "%s: every object has an apiVersion", f)
			require.NotEmpty(t, head.Metadata.Name, "%s: every object has a name", f)
			m.kinds[head.Kind] = append(m.kinds[head.Kind], head.Metadata.Name)
			switch head.Kind {
			case "Service":
				var s k8sService
				require.NoError(t, doc.Decode(&s), f)
				m.services[s.Metadata.Name] = s
			case "StatefulSet":
				require.Equal(t, "apps/v1", head.APIVersion)
				var s k8sStatefulSet
				require.NoError(t, doc.Decode(&s), f)
				m.statefulSets[s.Metadata.Name] = s
			}
		}
	}
	return m
}

func TestKubernetesManifests(t *testing.T) {
	m := readKubernetes(t)
	require.Len(t, m.statefulSets, 1)
	ss, ok := m.statefulSets["miyamoto"]
	require.True(t, ok)
	spec := ss.Spec
	require.Equal(t, 3, spec.Replicas)
	require.Equal(t, "Parallel", spec.PodManagementPolicy, "a node is ready only with a majority: pods must start together")
	labels := spec.Template.Metadata.Labels
	require.NotEmpty(t, spec.Selector.MatchLabels)
	for k, v := range spec.Selector.MatchLabels {
		require.Equal(t, v, labels[k], "the selector matches the pods")
	}

	// The headless Service names the pods for --peers, ready or not.
	peersSvc, ok := m.services[spec.ServiceName]
	require.True(t, ok, "serviceName %q is a Service", spec.ServiceName)
	require.Equal(t, "None", peersSvc.Spec.ClusterIP, "headless")
	require.True(t, peersSvc.Spec.PublishNotReadyAddresses, "peers must find each other before any is ready")
	require.Equal(t, spec.Selector.MatchLabels, peersSvc.Spec.Selector)
	// The client Service reaches the pods' API port.
	client, ok := m.services["miyamoto"]
	require.True(t, ok, "a client Service")
	require.NotEqual(t, "None", client.Spec.ClusterIP)
	require.Equal(t, spec.Selector.MatchLabels, client.Spec.Selector)
	require.Len(t, client.Spec.Ports, 1)
	require.Equal(t, "http", client.Spec.Ports[0].TargetPort)
	require.Contains(t, m.kinds["PodDisruptionBudget"], "miyamoto")

	pod := spec.Template.Spec
	require.True(t, pod.SecurityContext.RunAsNonRoot)
	require.Equal(t, 65532, pod.SecurityContext.RunAsUser)
	require.Equal(t, 65532, pod.SecurityContext.FSGroup, "the volume is writable by the node's user")
	require.Greater(t, pod.TerminationGracePeriodSeconds, 15, "more than --shutdown-timeout")
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation)
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	require.Equal(t, map[string]int{"http": 8088, "peer": 7088}, ports)
	require.Equal(t, "peer", peersSvc.Spec.Ports[0].TargetPort)
	require.NotNil(t, c.ReadinessProbe.HTTPGet)
	require.Equal(t, "/healthz", c.ReadinessProbe.HTTPGet.Path)
	require.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port)
	require.NotNil(t, c.LivenessProbe.HTTPGet)
	require.Equal(t, "/livez", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "http", c.LivenessProbe.HTTPGet.Port)

	// One PersistentVolumeClaim per pod, mounted where the node keeps its log.
	require.Len(t, spec.VolumeClaimTemplates, 1)
	claim := spec.VolumeClaimTemplates[0]
	require.Equal(t, []string{"ReadWriteOnce"}, claim.Spec.AccessModes)
	require.Len(t, c.VolumeMounts, 1)
	require.Equal(t, claim.Metadata.Name, c.VolumeMounts[0].Name)
	require.Equal(t, "/data", c.VolumeMounts[0].MountPath)

	// The node ID is the pod's name; the secrets come from a Secret, never a value.
	secrets := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.Name == "MIYAMOTO_NODE_ID":
			require.NotNil(t, e.ValueFrom)
			require.NotNil(t, e.ValueFrom.FieldRef)
			require.Equal(t, "metadata.name", e.ValueFrom.FieldRef.FieldPath)
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			secrets[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	require.Equal(t, map[string]string{"MIYAMOTO_API_TOKEN": "miyamoto/api-token", "MIYAMOTO_CLUSTER_SECRET": "miyamoto/cluster-secret"}, secrets)

	// Each pod's whole configuration is one serve accepts, and its --peers names
	// every pod at its DNS name under the headless Service.
	for i := 0; i < spec.Replicas; i++ {
		podName := fmt.Sprintf("%s-%d", ss.Metadata.Name, i)
		cfg := parseNode(t, "statefulset "+podName, c.Args, podEnv(c, podName))
		require.Equal(t, podName, cfg.NodeID)
		require.Equal(t, "0.0.0.0:8088", cfg.HTTPAddr)
		require.Equal(t, "0.0.0.0:7088", cfg.PeerAddr)
		require.Equal(t, "/data", cfg.DataDir)
		require.NotEmpty(t, cfg.APITokens)
		require.NotEmpty(t, cfg.ClusterSecret)
		want := map[string]string{}
		for j := 0; j < spec.Replicas; j++ {
			p := fmt.Sprintf("%s-%d", ss.Metadata.Name, j)
			want[p] = fmt.Sprintf("%s.%s:%d", p, spec.ServiceName, ports["peer"])
		}
		require.Equal(t, want, cfg.Peers)
	}
}

// podEnv is the container's environment in the pod podName, a secret's value
// standing in for each secretKeyRef.
func podEnv(c k8sContainer, podName string) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = podName
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret-" + e.ValueFrom.SecretKeyRef.Key + "-0123456789abcdef"
		}
	}
	return env
}

// The README's Deploying commands cannot run here (no Docker, no cluster); each is
// checked against the files it names, and a command without a check fails.
func TestREADMEDeployingCommands(t *testing.T) {
	lines := readmeCommands(t, "## Deploying")
	require.NotEmpty(t, lines)
	dockerArgs := map[string]bool{}
	for _, in := range readDockerfile(t) {
		if in.cmd == "ARG" {
			name, _, _ := strings.Cut(in.args, "=")
			dockerArgs[name] = true
		}
	}
	compose := readCompose(t)
	required := map[string]bool{}
	for _, s := range compose.Services {
		for _, v := range s.Environment {
			if m := composeRequired.FindStringSubmatch(v); m != nil {
				required[m[1]] = true
			}
		}
	}
	k8s := readKubernetes(t)
	ss := k8s.statefulSets["miyamoto"]
	secretKeys := map[string][]string{}
	for _, e := range ss.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			r := e.ValueFrom.SecretKeyRef
			secretKeys[r.Name] = append(secretKeys[r.Name], r.Key)
		}
	}
	for _, line := range lines {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "docker build "):
			require.Equal(t, ".", f[len(f)-1], "built from the root, where the Dockerfile is")
			for i, a := range f {
				if a == "--build-arg" {
					name, _, _ := strings.Cut(f[i+1], "=")
					require.True(t, dockerArgs[name], "%s: the Dockerfile has no ARG %s", line, name)
				}
			}
		case strings.HasPrefix(line, "export "):
			var set []string
			for _, m := range regexp.MustCompile(`(?:^| )([A-Z_][A-Z0-9_]*)=`).FindAllStringSubmatch(line, -1) {
				set = append(set, m[1])
			}
			require.ElementsMatch(t, sortedKeys(required), set, "%s: exports what compose.yaml requires", line)
		case line == "docker compose up -d --build":
			require.FileExists(t, filepath.Join(repoRoot, "compose.yaml"))
		case strings.HasPrefix(line, "MIYAMOTO_SERVER=http://127.0.0.1:"):
			port := strings.TrimPrefix(f[0], "MIYAMOTO_SERVER=http://")
			published := false
			for _, s := range compose.Services {
				published = published || slices.Contains(s.Ports, port+":8088")
			}
			require.True(t, published, "%s: compose publishes no API on %s", line, port)
			require.Equal(t, "./miyamoto", f[1], line)
			require.True(t, isManageCommand(f[2]), "%s: %s is not a management command", line, f[2])
		case strings.HasPrefix(line, "kubectl create secret generic "):
			name := f[4]
			var keys []string
			for _, m := range regexp.MustCompile(`--from-literal=([A-Za-z0-9._-]+)=`).FindAllStringSubmatch(line, -1) {
				keys = append(keys, m[1])
			}
			require.ElementsMatch(t, secretKeys[name], keys, "%s: the keys the StatefulSet reads from Secret %s", line, name)
		case strings.HasPrefix(line, "kubectl apply -f "):
			dir := filepath.Join(repoRoot, f[3])
			st, err := os.Stat(dir)
			require.NoError(t, err, line)
			require.True(t, st.IsDir(), line)
		case strings.HasPrefix(line, "kubectl rollout status statefulset/"):
			require.Contains(t, k8s.statefulSets, strings.TrimPrefix(f[3], "statefulset/"), line)
		case strings.HasPrefix(line, "kubectl port-forward svc/"):
			svc, ok := k8s.services[strings.TrimPrefix(f[2], "svc/")]
			require.True(t, ok, line)
			_, remote, _ := strings.Cut(f[3], ":")
			require.Equal(t, remote, fmt.Sprint(svc.Spec.Ports[0].Port), line)
		default:
			t.Errorf("README Deploying: no check for %q: add one to this test", line)
		}
	}
}

// readmeCommands is the lines of the ```sh blocks in the README section that
// starts with heading (up to the next "## "), comments and blank lines left out.
func readmeCommands(t *testing.T, heading string) []string {
	t.Helper()
	lines, err := readme.Commands(filepath.Join(repoRoot, "README.md"), heading)
	require.NoError(t, err)
	return lines
}
