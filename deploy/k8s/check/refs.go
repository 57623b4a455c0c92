package main

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// checkAll checks what holds for any build: names, namespaces, and every
// reference from one object to another.
func checkAll(m *manifest, p *problems) {
	checkNames(m, p)
	for _, d := range m.deployments {
		checkDeployment(m, d, p)
	}
	for _, s := range m.services {
		checkService(m, s, p)
	}
	for _, b := range m.pdbs {
		id := "PodDisruptionBudget " + b.Name
		if b.Spec.MinAvailable == nil && b.Spec.MaxUnavailable == nil {
			p.add("%s: neither minAvailable nor maxUnavailable", id)
		}
		if len(selected(m, b.Namespace, b.Spec.Selector, id, p)) == 0 {
			p.add("%s: selector matches no Deployment's pods", id)
		}
	}
	for _, h := range m.hpas {
		checkHPA(m, h, p)
	}
	for _, np := range m.netpols {
		checkNetworkPolicy(m, np, p)
	}
}

func checkNames(m *manifest, p *problems) {
	nsNames := map[string]bool{}
	for _, ns := range m.namespaces {
		nsNames[ns.Name] = true
	}
	check := func(kind string, meta metav1.ObjectMeta, dns1035 bool) {
		errs := validation.IsDNS1123Subdomain(meta.Name)
		if dns1035 {
			errs = validation.IsDNS1035Label(meta.Name)
		}
		for _, e := range errs {
			p.add("%s %s: name: %s", kind, meta.Name, e)
		}
		if len(nsNames) > 0 && !nsNames[meta.Namespace] {
			p.add("%s %s: namespace %q is not the build's Namespace (%s)", kind, meta.Name, meta.Namespace, join(sortedKeys(nsNames)))
		}
	}
	for _, o := range m.deployments {
		check("Deployment", o.ObjectMeta, false)
	}
	for _, o := range m.services {
		check("Service", o.ObjectMeta, true)
	}
	for _, o := range m.configMaps {
		check("ConfigMap", o.ObjectMeta, false)
	}
	for _, o := range m.secrets {
		check("Secret", o.ObjectMeta, false)
	}
	for _, o := range m.pdbs {
		check("PodDisruptionBudget", o.ObjectMeta, false)
	}
	for _, o := range m.hpas {
		check("HorizontalPodAutoscaler", o.ObjectMeta, false)
	}
	for _, o := range m.netpols {
		check("NetworkPolicy", o.ObjectMeta, false)
	}
}

// selected returns the Deployments in ns whose pod template sel matches.
func selected(m *manifest, ns string, sel *metav1.LabelSelector, id string, p *problems) []*appsv1.Deployment {
	if sel == nil {
		p.add("%s: no selector", id)
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		p.add("%s: selector: %v", id, err)
		return nil
	}
	var out []*appsv1.Deployment
	for _, d := range m.deployments {
		if d.Namespace == ns && s.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func configMap(m *manifest, ns, name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Namespace == ns && c.Name == name {
			return c
		}
	}
	return nil
}

func secret(m *manifest, ns, name string) *corev1.Secret {
	for _, s := range m.secrets {
		if s.Namespace == ns && s.Name == name {
			return s
		}
	}
	return nil
}

// keysOf returns the data keys of a ConfigMap or Secret.
func keysOf(c *corev1.ConfigMap, s *corev1.Secret) map[string]bool {
	keys := map[string]bool{}
	if c != nil {
		for k := range c.Data {
			keys[k] = true
		}
		for k := range c.BinaryData {
			keys[k] = true
		}
	}
	if s != nil {
		for k := range s.Data {
			keys[k] = true
		}
		for k := range s.StringData {
			keys[k] = true
		}
	}
	return keys
}

// checkSource checks a ConfigMap or Secret reference and its item keys.
func checkSource(m *manifest, ns, id, kind, name string, optional *bool, items []corev1.KeyToPath, p *problems) {
	var keys map[string]bool
	switch kind {
	case "ConfigMap":
		c := configMap(m, ns, name)
		if c == nil {
			if optional == nil || !*optional {
				p.add("%s: ConfigMap %q does not exist", id, name)
			}
			return
		}
		keys = keysOf(c, nil)
	case "Secret":
		s := secret(m, ns, name)
		if s == nil {
			if optional == nil || !*optional {
				p.add("%s: Secret %q does not exist", id, name)
			}
			return
		}
		keys = keysOf(nil, s)
	}
	for _, it := range items {
		if !keys[it.Key] {
			p.add("%s: %s %q has no key %q (it has %s)", id, kind, name, it.Key, join(sortedKeys(keys)))
		}
	}
}

// portRef reports whether port (a name or a number) is a containerPort of
// one of the containers.
func portRef(cs []corev1.Container, port intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range cs {
		for _, cp := range c.Ports {
			pp := cp.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if pp != proto {
				continue
			}
			if port.Type == intstr.String && cp.Name == port.StrVal {
				return true
			}
			if port.Type == intstr.Int && cp.ContainerPort == port.IntVal {
				return true
			}
		}
	}
	return false
}

func checkProbe(c corev1.Container, which string, pr *corev1.Probe, id string, p *problems) {
	if pr == nil {
		p.add("%s: container %s has no %s", id, c.Name, which)
		return
	}
	cs := []corev1.Container{c}
	switch {
	case pr.GRPC != nil:
		if !portRef(cs, intstr.FromInt32(pr.GRPC.Port), corev1.ProtocolTCP) {
			p.add("%s: container %s: %s grpc port %d is not a containerPort", id, c.Name, which, pr.GRPC.Port)
		}
	case pr.TCPSocket != nil:
		if !portRef(cs, pr.TCPSocket.Port, corev1.ProtocolTCP) {
			p.add("%s: container %s: %s tcpSocket port %s is not a containerPort", id, c.Name, which, pr.TCPSocket.Port.String())
		}
	case pr.HTTPGet != nil:
		if !portRef(cs, pr.HTTPGet.Port, corev1.ProtocolTCP) {
			p.add("%s: container %s: %s httpGet port %s is not a containerPort", id, c.Name, which, pr.HTTPGet.Port.String())
		}
	case pr.Exec != nil:
		if len(pr.Exec.Command) == 0 {
			p.add("%s: container %s: %s exec has no command", id, c.Name, which)
		}
	default:
		p.add("%s: container %s: %s has no handler", id, c.Name, which)
	}
}

func checkDeployment(m *manifest, d *appsv1.Deployment, p *problems) {
	id := "Deployment " + d.Name
	ps := d.Spec.Template.Spec
	if d.Spec.Selector == nil {
		p.add("%s: no selector", id)
	} else if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil {
		p.add("%s: selector: %v", id, err)
	} else if !s.Matches(labels.Set(d.Spec.Template.Labels)) {
		p.add("%s: selector %s does not match the pod labels %v", id, s, d.Spec.Template.Labels)
	}
	for _, t := range ps.TopologySpreadConstraints {
		if s, err := metav1.LabelSelectorAsSelector(t.LabelSelector); err != nil || !s.Matches(labels.Set(d.Spec.Template.Labels)) {
			p.add("%s: topologySpreadConstraint (%s) does not select its own pods", id, t.TopologyKey)
		}
	}
	if ps.ServiceAccountName != "" {
		found := ps.ServiceAccountName == "default"
		for _, sa := range m.serviceAccts {
			found = found || (sa.Namespace == d.Namespace && sa.Name == ps.ServiceAccountName)
		}
		if !found {
			p.add("%s: ServiceAccount %q does not exist", id, ps.ServiceAccountName)
		}
	}
	volumes := map[string]bool{}
	for _, v := range ps.Volumes {
		if volumes[v.Name] {
			p.add("%s: volume %q twice", id, v.Name)
		}
		volumes[v.Name] = true
		vid := id + " volume " + v.Name
		switch {
		case v.ConfigMap != nil:
			checkSource(m, d.Namespace, vid, "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Optional, v.ConfigMap.Items, p)
		case v.Secret != nil:
			checkSource(m, d.Namespace, vid, "Secret", v.Secret.SecretName, v.Secret.Optional, v.Secret.Items, p)
		case v.Projected != nil:
			paths := map[string]bool{}
			for _, src := range v.Projected.Sources {
				var items []corev1.KeyToPath
				switch {
				case src.ConfigMap != nil:
					items = src.ConfigMap.Items
					checkSource(m, d.Namespace, vid, "ConfigMap", src.ConfigMap.Name, src.ConfigMap.Optional, items, p)
				case src.Secret != nil:
					items = src.Secret.Items
					checkSource(m, d.Namespace, vid, "Secret", src.Secret.Name, src.Secret.Optional, items, p)
				}
				for _, it := range items {
					if paths[it.Path] {
						p.add("%s: path %q projected twice", vid, it.Path)
					}
					paths[it.Path] = true
				}
			}
		}
	}
	names := map[string]bool{}
	for _, c := range ps.Containers {
		cid := id + " container " + c.Name
		names[c.Name] = true
		if c.Image == "" {
			p.add("%s: no image", cid)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				p.add("%s: no %s request", cid, r)
			}
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			p.add("%s: no memory limit", cid)
		}
		for r, req := range c.Resources.Requests {
			if lim, ok := c.Resources.Limits[r]; ok && req.Cmp(lim) > 0 {
				p.add("%s: %s request %s above its limit %s", cid, r, req.String(), lim.String())
			}
		}
		ports := map[string]bool{}
		for _, cp := range c.Ports {
			for _, k := range []string{"name " + cp.Name, "port " + strconv.Itoa(int(cp.ContainerPort))} {
				if k != "name " && ports[k] {
					p.add("%s: %s declared twice", cid, k)
				}
				ports[k] = true
			}
		}
		checkProbe(c, "readinessProbe", c.ReadinessProbe, id, p)
		checkProbe(c, "livenessProbe", c.LivenessProbe, id, p)
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				p.add("%s: volumeMount %q names no volume", cid, vm.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			switch vf := e.ValueFrom; {
			case vf.ConfigMapKeyRef != nil:
				checkSource(m, d.Namespace, cid+" env "+e.Name, "ConfigMap", vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Optional,
					[]corev1.KeyToPath{{Key: vf.ConfigMapKeyRef.Key}}, p)
			case vf.SecretKeyRef != nil:
				checkSource(m, d.Namespace, cid+" env "+e.Name, "Secret", vf.SecretKeyRef.Name, vf.SecretKeyRef.Optional,
					[]corev1.KeyToPath{{Key: vf.SecretKeyRef.Key}}, p)
			case vf.ResourceFieldRef != nil:
				checkResourceFieldRef(ps.Containers, c.Name, vf.ResourceFieldRef, cid+" env "+e.Name, p)
			}
		}
		for _, ef := range c.EnvFrom {
			switch {
			case ef.ConfigMapRef != nil:
				checkSource(m, d.Namespace, cid+" envFrom", "ConfigMap", ef.ConfigMapRef.Name, ef.ConfigMapRef.Optional, nil, p)
			case ef.SecretRef != nil:
				checkSource(m, d.Namespace, cid+" envFrom", "Secret", ef.SecretRef.Name, ef.SecretRef.Optional, nil, p)
			}
		}
		checkRestricted(ps.SecurityContext, c, cid, p)
	}
	if len(ps.Containers) == 0 {
		p.add("%s: no containers", id)
	}
}

func checkResourceFieldRef(cs []corev1.Container, self string, ref *corev1.ResourceFieldSelector, id string, p *problems) {
	name := ref.ContainerName
	if name == "" {
		name = self
	}
	for _, c := range cs {
		if c.Name != name {
			continue
		}
		var q resource.Quantity
		var ok bool
		switch ref.Resource {
		case "limits.cpu":
			q, ok = c.Resources.Limits[corev1.ResourceCPU]
		case "limits.memory":
			q, ok = c.Resources.Limits[corev1.ResourceMemory]
		case "requests.cpu":
			q, ok = c.Resources.Requests[corev1.ResourceCPU]
		case "requests.memory":
			q, ok = c.Resources.Requests[corev1.ResourceMemory]
		default:
			p.add("%s: resource %q not checked", id, ref.Resource)
			return
		}
		if !ok || q.IsZero() {
			p.add("%s: %s of container %s is not set", id, ref.Resource, name)
		}
		return
	}
	p.add("%s: no container %q", id, name)
}

// checkRestricted holds every container to the "restricted" Pod Security
// Standard and smtpgate's own rules: read-only root, all capabilities
// dropped, NET_BIND_SERVICE added back only to a container that declares a
// port below 1024.
func checkRestricted(pod *corev1.PodSecurityContext, c corev1.Container, id string, p *problems) {
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		p.add("%s: runAsNonRoot is not true", id)
	}
	if uid := sc.RunAsUser; uid != nil && *uid == 0 || sc.RunAsUser == nil && pod.RunAsUser != nil && *pod.RunAsUser == 0 {
		p.add("%s: runs as uid 0", id)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.add("%s: allowPrivilegeEscalation is not false", id)
	}
	if sc.Privileged != nil && *sc.Privileged {
		p.add("%s: privileged", id)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p.add("%s: readOnlyRootFilesystem is not true", id)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		p.add("%s: seccompProfile is not RuntimeDefault", id)
	}
	dropsAll := false
	if sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			dropsAll = dropsAll || d == "ALL"
		}
		low := false
		for _, cp := range c.Ports {
			low = low || cp.ContainerPort < 1024
		}
		for _, a := range sc.Capabilities.Add {
			if a != "NET_BIND_SERVICE" {
				p.add("%s: adds capability %s", id, a)
			} else if !low {
				p.add("%s: adds NET_BIND_SERVICE but declares no port below 1024", id)
			}
		}
	}
	if !dropsAll {
		p.add("%s: capabilities do not drop ALL", id)
	}
}

func checkService(m *manifest, s *corev1.Service, p *problems) {
	id := "Service " + s.Name
	if len(s.Spec.Selector) == 0 {
		p.add("%s: no selector", id)
		return
	}
	ds := selected(m, s.Namespace, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, id, p)
	if len(ds) == 0 {
		p.add("%s: selector %v matches no Deployment's pods", id, s.Spec.Selector)
	}
	if len(s.Spec.Ports) == 0 {
		p.add("%s: no ports", id)
	}
	for _, sp := range s.Spec.Ports {
		target := sp.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(sp.Port)
		}
		for _, d := range ds {
			if !portRef(d.Spec.Template.Spec.Containers, target, sp.Protocol) {
				p.add("%s: port %s targets %s, which Deployment %s does not declare", id, sp.Name, target.String(), d.Name)
			}
		}
	}
	if s.Spec.ExternalTrafficPolicy != "" && s.Spec.Type != corev1.ServiceTypeLoadBalancer && s.Spec.Type != corev1.ServiceTypeNodePort {
		p.add("%s: externalTrafficPolicy on a %s Service", id, s.Spec.Type)
	}
}
