// Command check validates the output of `kustomize build` for smtpgate
// offline: every object is decoded strictly into the k8s.io/api type of its
// kind (an unknown field or kind is an error), and the objects are checked
// against each other — selectors match pod labels, Services, probes and
// NetworkPolicies name ports the containers declare, ConfigMaps, Secrets
// and their keys exist, autoscalers target Deployments with CPU requests —
// and against what smtpgate needs: the restricted security context, the
// edge's public Service, the headless gRPC Services the dns:/// targets in
// main.cf name, and the network policy graph. With -bin, each smtpgate
// container's /etc/smtpgate is rebuilt from its volume and passed to the
// binary's own `check`.
//
//	kustomize build deploy/k8s/overlays/example | go run . [-bin DIR] [-name NAME]
//
// It runs outside the Go workspace (GOWORK=off), as scripts/check-deploy
// does. Exit status 1 lists every problem.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifest is one build's objects, by kind.
type manifest struct {
	namespaces   []*corev1.Namespace
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	configMaps   []*corev1.ConfigMap
	secrets      []*corev1.Secret
	pdbs         []*policyv1.PodDisruptionBudget
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	netpols      []*networkingv1.NetworkPolicy
	serviceAccts []*corev1.ServiceAccount
}

// problems collects every failure; nothing stops at the first.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func main() {
	bin := flag.String("bin", "", "`directory` with smtpgate-edge, -policy and -auth: run each one's check on its rebuilt /etc/smtpgate")
	name := flag.String("name", "stdin", "what the input is, for messages")
	flag.Parse()
	in := io.Reader(os.Stdin)
	if flag.NArg() == 1 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer f.Close()
		in, *name = f, flag.Arg(0)
	}
	var p problems
	m, n := decode(in, &p)
	if n == 0 {
		p.add("no objects")
	}
	if len(p) == 0 {
		checkAll(m, &p)
		checkSmtpgate(m, &p)
		if *bin != "" {
			runServiceChecks(m, *bin, &p)
		}
	}
	if len(p) > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d problem(s):\n", *name, len(p))
		for _, s := range p {
			fmt.Fprintln(os.Stderr, "  "+s)
		}
		os.Exit(1)
	}
	fmt.Printf("%s: %d objects valid\n", *name, n)
}

// decode reads a multi-document YAML stream and decodes each document
// strictly into the type of its apiVersion and kind.
func decode(in io.Reader, p *problems) (*manifest, int) {
	m := &manifest{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(in))
	seen := map[string]bool{}
	n := 0
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.add("document %d: %v", i, err)
			break
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			p.add("document %d: %v", i, err)
			continue
		}
		id := head.APIVersion + " " + head.Kind + " " + head.Metadata.Namespace + "/" + head.Metadata.Name
		if head.Metadata.Name == "" {
			p.add("document %d (%s %s): no metadata.name", i, head.APIVersion, head.Kind)
		}
		if seen[id] {
			p.add("%s: defined twice", id)
		}
		seen[id] = true
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			o := &corev1.Namespace{}
			m.namespaces, obj = append(m.namespaces, o), o
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			m.deployments, obj = append(m.deployments, o), o
		case "v1 Service":
			o := &corev1.Service{}
			m.services, obj = append(m.services, o), o
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			m.configMaps, obj = append(m.configMaps, o), o
		case "v1 Secret":
			o := &corev1.Secret{}
			m.secrets, obj = append(m.secrets, o), o
		case "v1 ServiceAccount":
			o := &corev1.ServiceAccount{}
			m.serviceAccts, obj = append(m.serviceAccts, o), o
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			m.pdbs, obj = append(m.pdbs, o), o
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			m.hpas, obj = append(m.hpas, o), o
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			m.netpols, obj = append(m.netpols, o), o
		default:
			p.add("%s: kind not known to the checker (add its type to check/main.go)", id)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			p.add("%s: %v", id, err)
			continue
		}
		n++
	}
	return m, n
}

// sortedKeys returns the keys of a set, sorted, for stable messages.
func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// join lists names for a message.
func join(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}
