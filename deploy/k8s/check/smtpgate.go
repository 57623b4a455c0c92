package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

const configDir = "/etc/smtpgate"

// smtpgateServices are the three services, by short name.
var smtpgateServices = []string{"edge", "policy", "auth"}

// role returns the smtpgate service a Deployment runs ("edge", "policy",
// "auth"), from its image's last path element (smtpgate-<svc>, whatever the
// registry and tag), "redis" for the shared Redis, or "".
func role(d *appsv1.Deployment) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		image := c.Image[strings.LastIndex(c.Image, "/")+1:]
		image, _, _ = strings.Cut(image, "@")
		image, _, _ = strings.Cut(image, ":")
		for _, svc := range smtpgateServices {
			if image == "smtpgate-"+svc {
				return svc
			}
		}
	}
	if d.Name == "smtpgate-redis" {
		return "redis"
	}
	return ""
}

func byRole(m *manifest) map[string]*appsv1.Deployment {
	out := map[string]*appsv1.Deployment{}
	for _, d := range m.deployments {
		if r := role(d); r != "" {
			out[r] = d
		}
	}
	return out
}

// servicesFor returns the Services whose selector matches d's pods.
func servicesFor(m *manifest, d *appsv1.Deployment) []*corev1.Service {
	var out []*corev1.Service
	for _, s := range m.services {
		if s.Namespace != d.Namespace || len(s.Spec.Selector) == 0 {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: s.Spec.Selector})
		if err == nil && sel.Matches(labelsOf(d)) {
			out = append(out, s)
		}
	}
	return out
}

// checkSmtpgate checks what smtpgate needs of the build.
func checkSmtpgate(m *manifest, p *problems) {
	roles := byRole(m)
	for _, svc := range smtpgateServices {
		d := roles[svc]
		if d == nil {
			p.add("no Deployment runs an image named smtpgate-%s", svc)
			continue
		}
		id := "Deployment " + d.Name
		c := d.Spec.Template.Spec.Containers[0]
		if !slices.Equal(c.Args, []string{"-c", configDir}) {
			p.add("%s: args %q, want [-c %s]", id, c.Args, configDir)
		}
		if configVolume(d) == nil {
			p.add("%s: nothing mounted read-only at %s", id, configDir)
		}
		low, bind := false, false
		for _, cp := range c.Ports {
			low = low || cp.ContainerPort < 1024
		}
		if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil {
			bind = slices.Contains(sc.Capabilities.Add, "NET_BIND_SERVICE")
		}
		if low && !bind {
			p.add("%s: a port below 1024 needs NET_BIND_SERVICE", id)
		}
		if svc != "edge" && bind {
			p.add("%s: only the edge may have NET_BIND_SERVICE", id)
		}
		// The kubelet's grpc probes speak plaintext only: with TLS on the
		// gRPC listener they would fail, so TCP probes are expected then.
		files, _ := configFiles(m, d)
		cf := mainCF(files["main.cf"])
		grpcTLS := cf["smtpgate_grpc_tls_cert_file"] != ""
		// Callers are told apart by their client certificates only:
		// policy and auth require them (mutual TLS), and the edge and
		// policy present one.
		switch {
		case svc != "edge" && cf["smtpgate_grpc_tls_client_ca_file"] == "":
			p.add("%s: its main.cf does not set smtpgate_grpc_tls_client_ca_file: gRPC without mutual TLS trusts every caller with every method", id)
		case svc != "auth" && cf["smtpgate_grpc_tls_client_cert_file"] == "":
			p.add("%s: its main.cf does not set smtpgate_grpc_tls_client_cert_file: policy and auth refuse a caller without a certificate", id)
		case strings.EqualFold(cf["smtpgate_grpc_allow_plaintext"], "yes"):
			p.add("%s: smtpgate_grpc_allow_plaintext = yes: the services talk mutual TLS", id)
		}
		for _, probe := range []struct {
			kind string
			pr   *corev1.Probe
		}{{"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
			kind, pr := probe.kind, probe.pr
			switch {
			case pr == nil || svc == "edge":
			case grpcTLS && pr.GRPC != nil:
				p.add("%s: %s is a grpc probe but smtpgate_grpc_tls_cert_file is set: the kubelet's grpc probes cannot speak TLS; use a tcpSocket probe", id, kind)
			case !grpcTLS && pr.GRPC == nil:
				p.add("%s: %s should be a grpc probe (grpc.health.v1)", id, kind)
			}
		}
		has := func(kind string, match func(ns, name string) bool) {
			if !match(d.Namespace, d.Name) {
				p.add("%s: no %s", id, kind)
			}
		}
		has("PodDisruptionBudget", func(ns, _ string) bool {
			for _, b := range m.pdbs {
				if b.Namespace == ns && slices.Contains(selected(m, ns, b.Spec.Selector, "", p), d) {
					return true
				}
			}
			return false
		})
		has("HorizontalPodAutoscaler", func(ns, name string) bool {
			for _, h := range m.hpas {
				if h.Namespace == ns && h.Spec.ScaleTargetRef.Name == name {
					return true
				}
			}
			return false
		})
		svcs := servicesFor(m, d)
		if len(svcs) != 1 {
			p.add("%s: %d Services select it, want 1", id, len(svcs))
			continue
		}
		s := svcs[0]
		sid := "Service " + s.Name
		switch svc {
		case "edge":
			if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
				p.add("%s: type %s, want LoadBalancer", sid, s.Spec.Type)
			}
			if s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
				p.add("%s: externalTrafficPolicy %q, want Local (keeps the client's address)", sid, s.Spec.ExternalTrafficPolicy)
			}
			for _, want := range []int32{25, 587, 465} {
				if !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == want }) {
					p.add("%s: no port %d", sid, want)
				}
			}
		default:
			if s.Spec.ClusterIP != corev1.ClusterIPNone {
				p.add("%s: not headless (clusterIP: None): dns:/// clients need one address per pod", sid)
			}
		}
	}
	if len(p.list()) == 0 {
		checkConfig(m, roles, p)
		checkIngressGraph(m, roles, p)
	}
}

func (p *problems) list() []string { return *p }

func labelsOf(d *appsv1.Deployment) labels.Set { return labels.Set(d.Spec.Template.Labels) }

// configVolume returns the volume mounted at /etc/smtpgate.
func configVolume(d *appsv1.Deployment) *corev1.Volume {
	c := d.Spec.Template.Spec.Containers[0]
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != configDir || !vm.ReadOnly {
			continue
		}
		for i, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name {
				return &d.Spec.Template.Spec.Volumes[i]
			}
		}
	}
	return nil
}

// configFiles returns the files a Deployment sees in /etc/smtpgate, by
// path, and which of them come from a kubernetes.io/tls Secret.
func configFiles(m *manifest, d *appsv1.Deployment) (files map[string]string, tlsFiles map[string]string) {
	files, tlsFiles = map[string]string{}, map[string]string{}
	v := configVolume(d)
	if v == nil {
		return
	}
	add := func(data map[string]string, items []corev1.KeyToPath, tls bool) {
		if len(items) == 0 {
			for k := range data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			files[it.Path] = data[it.Key]
			if tls || it.Key == ticketKeysKey {
				tlsFiles[it.Path] = it.Key
			}
		}
	}
	secretData := func(s *corev1.Secret) map[string]string {
		out := map[string]string{}
		for k, v := range s.Data {
			out[k] = string(v)
		}
		for k, v := range s.StringData {
			out[k] = v
		}
		return out
	}
	var cms []*corev1.ConfigMapProjection
	var secs []*corev1.SecretProjection
	switch {
	case v.ConfigMap != nil:
		cms = append(cms, &corev1.ConfigMapProjection{LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items})
	case v.Secret != nil:
		secs = append(secs, &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Items: v.Secret.Items})
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			if src.ConfigMap != nil {
				cms = append(cms, src.ConfigMap)
			}
			if src.Secret != nil {
				secs = append(secs, src.Secret)
			}
		}
	}
	for _, c := range cms {
		if cm := configMap(m, d.Namespace, c.Name); cm != nil {
			add(cm.Data, c.Items, false)
		}
	}
	for _, s := range secs {
		if sec := secret(m, d.Namespace, s.Name); sec != nil {
			add(secretData(sec), s.Items, sec.Type == corev1.SecretTypeTLS)
		}
	}
	return
}

// mainCF parses main.cf's "name = value" lines (continuation lines start
// with white space; no $expansion).
func mainCF(text string) map[string]string {
	out := map[string]string{}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last != "" {
				out[last] += " " + trimmed
			}
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		last = strings.TrimSpace(name)
		out[last] = strings.TrimSpace(value)
	}
	return out
}

// listener is one master.cf service line with its -o overrides.
type listener struct {
	addr      string
	overrides map[string]string
}

func masterCF(text string) []listener {
	var out []listener
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			out = append(out, listener{addr: strings.Fields(line)[0], overrides: map[string]string{}})
			continue
		}
		f := strings.Fields(trimmed)
		if len(out) > 0 && len(f) == 2 && f[0] == "-o" {
			k, v, _ := strings.Cut(f[1], "=")
			out[len(out)-1].overrides[k] = v
		}
	}
	return out
}

func portOf(addr string) int32 {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return -1
	}
	return int32(n)
}

// serviceWithPort finds the Service of the build a host name means (its
// first label; the rest may be the namespace and cluster domain).
func serviceWithPort(m *manifest, ns, host string, port int32) (*corev1.Service, bool) {
	name, rest, _ := strings.Cut(host, ".")
	if rest != "" {
		if n, _, _ := strings.Cut(rest, "."); n != ns {
			return nil, false
		}
	}
	for _, s := range m.services {
		if s.Namespace == ns && s.Name == name {
			return s, slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Port == port })
		}
	}
	return nil, false
}

func containerPorts(d *appsv1.Deployment) []int32 {
	var out []int32
	for _, cp := range d.Spec.Template.Spec.Containers[0].Ports {
		out = append(out, cp.ContainerPort)
	}
	return out
}

// checkConfig checks main.cf and master.cf, as each Deployment sees them,
// against the objects: the service addresses name Services of the build,
// the listen addresses the declared container ports.
func checkConfig(m *manifest, roles map[string]*appsv1.Deployment, p *problems) {
	for _, svc := range smtpgateServices {
		d := roles[svc]
		id := "Deployment " + d.Name + " " + configDir
		files, _ := configFiles(m, d)
		if _, ok := files["main.cf"]; !ok {
			p.add("%s: no main.cf", id)
			continue
		}
		if _, ok := files["master.cf"]; !ok {
			p.add("%s: no master.cf", id)
		}
		cf := mainCF(files["main.cf"])
		for _, name := range []string{"smtpgate_policy_service", "smtpgate_auth_service"} {
			if svc == "auth" || (svc == "policy" && name == "smtpgate_policy_service") {
				continue
			}
			target := cf[name]
			want := "smtpgate-" + strings.TrimSuffix(strings.TrimPrefix(name, "smtpgate_"), "_service")
			hostport, ok := strings.CutPrefix(target, "dns:///")
			if !ok {
				p.add("%s/main.cf: %s = %q: want dns:///%s:PORT (one address per replica)", id, name, target, want)
				continue
			}
			host, _, _ := net.SplitHostPort(hostport)
			s, portOK := serviceWithPort(m, d.Namespace, host, portOf(hostport))
			switch {
			case s == nil:
				p.add("%s/main.cf: %s = %s: no Service %q in the build", id, name, target, host)
			case !portOK:
				p.add("%s/main.cf: %s = %s: Service %s has no port %d", id, name, target, s.Name, portOf(hostport))
			case s.Name != want:
				p.add("%s/main.cf: %s = %s names Service %s, want %s", id, name, target, s.Name, want)
			}
		}
		for _, name := range []string{"smtpgate_auth_redis", "smtpgate_dns_redis", "smtpgate_connection_limit_redis", "smtpgate_rate_limit_redis", "smtpgate_greylist_redis"} {
			if cf[name] == "" {
				continue
			}
			// The value may hold a password: it is never printed.
			u, err := url.Parse(cf[name])
			defPort := map[string]int32{"redis": 6379, "rediss": 6379, "redis+cluster": 6379, "rediss+cluster": 6379,
				"redis+sentinel": 26379, "rediss+sentinel": 26379}
			if err != nil || defPort[u.Scheme] == 0 {
				p.add("%s/main.cf: %s is not a redis://, redis+sentinel:// or redis+cluster:// URL (value not shown: it may hold a password)", id, name)
				continue
			}
			for _, hostport := range strings.Split(u.Host, ",") {
				host, port := hostport, defPort[u.Scheme]
				if h, _, err := net.SplitHostPort(hostport); err == nil {
					host, port = h, portOf(hostport)
				}
				if s, ok := serviceWithPort(m, d.Namespace, host, port); s == nil || !ok {
					p.add("%s/main.cf: %s: no Service %s with port %d in the build", id, name, host, port)
				}
			}
		}
		ports := containerPorts(d)
		switch svc {
		case "policy", "auth":
			listen := cf["smtpgate_"+svc+"_listen"]
			if !slices.Contains(ports, portOf(listen)) {
				p.add("%s/main.cf: smtpgate_%s_listen = %q: not a containerPort (%v)", id, svc, listen, ports)
			}
			if host, _, _ := net.SplitHostPort(listen); host != "0.0.0.0" && host != "" && host != "::" {
				p.add("%s/main.cf: smtpgate_%s_listen = %q: pods must listen on all addresses", id, svc, listen)
			}
		case "edge":
			seen := map[int32]bool{}
			for _, l := range masterCF(files["master.cf"]) {
				port := portOf(l.addr)
				seen[port] = true
				if !slices.Contains(ports, port) {
					p.add("%s/master.cf: listener %s: not a containerPort (%v)", id, l.addr, ports)
				}
				if l.overrides["smtpd_upstream_proxy_protocol"] == "haproxy" {
					nets := cf["smtpgate_proxy_networks"]
					if v, ok := l.overrides["smtpgate_proxy_networks"]; ok {
						nets = v
					}
					if strings.TrimSpace(nets) == "" {
						p.add("%s/master.cf: listener %s takes PROXY headers but smtpgate_proxy_networks is empty: every connection would be dropped", id, l.addr)
					}
				}
			}
			for _, port := range ports {
				if !seen[port] {
					p.add("%s/master.cf: containerPort %d has no listener", id, port)
				}
			}
		}
	}
}

// checkIngressGraph checks who may reach what: anyone the edge's SMTP
// ports; only the edge policy; the edge and policy (auth: tables) auth;
// only policy, auth and the edge the Redis; and a default deny for everything else.
func checkIngressGraph(m *manifest, roles map[string]*appsv1.Deployment, p *problems) {
	name := func(r string) string {
		if d := roles[r]; d != nil {
			return d.Name
		}
		return ""
	}
	want := map[string][]string{
		"edge":   {"*"},
		"policy": {name("edge")},
		"auth":   {name("edge"), name("policy")},
		"redis":  {name("auth"), name("edge"), name("policy")},
	}
	for r, d := range roles {
		w := want[r]
		slices.Sort(w)
		for _, cp := range d.Spec.Template.Spec.Containers[0].Ports {
			if got := ingressFrom(m, d, cp); !slices.Equal(got, w) {
				p.add("NetworkPolicies: %s reachable from %s, want %s", describePort(d, cp), join(got), join(w))
			}
		}
	}
	deny := false
	for _, np := range m.netpols {
		deny = deny || emptySelector(np.Spec.PodSelector) && hasIngressType(np) && len(np.Spec.Ingress) == 0
	}
	if !deny {
		p.add("NetworkPolicies: no default deny of ingress (podSelector: {}, no rules)")
	}
}

// ticketKeysKey is the key of the edge's TLS session ticket keys in its
// Secret (smtpgate-tls-tickets), projected as tls/tickets.
const ticketKeysKey = "tickets"

// runServiceChecks rebuilds each smtpgate Deployment's /etc/smtpgate in a
// temporary directory and runs `smtpgate-<svc> -c DIR check` on it. The
// kubernetes.io/tls Secrets and the ticket keys are placeholders, so a
// throwaway self-signed pair and a throwaway key stand in for them.
func runServiceChecks(m *manifest, bin string, p *problems) {
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		p.add("self-signed certificate: %v", err)
		return
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		p.add("ticket key: %v", err)
		return
	}
	ticketKey := hex.EncodeToString(key[:]) + "\n"
	roles := byRole(m)
	for _, svc := range smtpgateServices {
		d := roles[svc]
		dir, err := os.MkdirTemp("", "smtpgate-check-")
		if err != nil {
			p.add("%v", err)
			return
		}
		defer os.RemoveAll(dir)
		files, tlsFiles := configFiles(m, d)
		for path, content := range files {
			switch tlsFiles[path] {
			case corev1.TLSCertKey:
				content = certPEM
			case corev1.TLSPrivateKeyKey:
				content = keyPEM
			case corev1.ServiceAccountRootCAKey: // "ca.crt": self-signed, its own CA
				content = certPEM
			case ticketKeysKey:
				content = ticketKey
			}
			full := filepath.Join(dir, filepath.FromSlash(path))
			if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
				p.add("%v", err)
				return
			}
			if err := os.WriteFile(full, []byte(content), 0o600); err != nil {
				p.add("%v", err)
				return
			}
		}
		out, err := exec.Command(filepath.Join(bin, "smtpgate-"+svc), "-c", dir, "check").CombinedOutput()
		if err != nil {
			p.add("Deployment %s: smtpgate-%s check of its %s: %v\n%s", d.Name, svc, configDir, err,
				strings.ReplaceAll(strings.TrimSpace(strings.ReplaceAll(string(out), dir, configDir)), "\n", "\n    "))
		}
	}
}

func selfSigned() (certPEM, keyPEM string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.example.org"},
		DNSNames:     []string{"mail.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})), nil
}
