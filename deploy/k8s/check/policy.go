package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func checkHPA(m *manifest, h *autoscalingv2.HorizontalPodAutoscaler, p *problems) {
	id := "HorizontalPodAutoscaler " + h.Name
	ref := h.Spec.ScaleTargetRef
	var target *appsv1.Deployment
	for _, d := range m.deployments {
		if d.Namespace == h.Namespace && d.Name == ref.Name {
			target = d
		}
	}
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || target == nil {
		p.add("%s: scaleTargetRef %s %s %s is not a Deployment of the build", id, ref.APIVersion, ref.Kind, ref.Name)
		return
	}
	if target.Spec.Replicas != nil {
		p.add("%s: Deployment %s sets replicas, which every apply would reset under the autoscaler", id, target.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
		p.add("%s: minReplicas below 2 (no redundancy)", id)
	} else if *h.Spec.MinReplicas > h.Spec.MaxReplicas {
		p.add("%s: minReplicas %d above maxReplicas %d", id, *h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	if len(h.Spec.Metrics) == 0 {
		p.add("%s: no metrics", id)
	}
	for _, mt := range h.Spec.Metrics {
		if mt.Type != autoscalingv2.ResourceMetricSourceType || mt.Resource == nil {
			continue
		}
		if mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
			for _, c := range target.Spec.Template.Spec.Containers {
				if _, ok := c.Resources.Requests[mt.Resource.Name]; !ok {
					p.add("%s: %s utilization needs a %s request on container %s", id, mt.Resource.Name, mt.Resource.Name, c.Name)
				}
			}
		}
	}
}

func checkNetworkPolicy(m *manifest, np *networkingv1.NetworkPolicy, p *problems) {
	id := "NetworkPolicy " + np.Name
	if len(np.Spec.PolicyTypes) == 0 {
		p.add("%s: no policyTypes", id)
	}
	targets := m.deployments
	if !emptySelector(np.Spec.PodSelector) {
		targets = selected(m, np.Namespace, &np.Spec.PodSelector, id, p)
		if len(targets) == 0 {
			p.add("%s: podSelector matches no Deployment's pods", id)
		}
	}
	for _, rule := range np.Spec.Ingress {
		for _, peer := range rule.From {
			if peer.PodSelector != nil && peer.NamespaceSelector == nil && !emptySelector(*peer.PodSelector) {
				if len(selected(m, np.Namespace, peer.PodSelector, id, p)) == 0 {
					p.add("%s: from podSelector %v matches no Deployment's pods", id, peer.PodSelector.MatchLabels)
				}
			}
		}
		for _, port := range rule.Ports {
			if port.Port == nil {
				continue
			}
			proto := corev1.ProtocolTCP
			if port.Protocol != nil {
				proto = *port.Protocol
			}
			for _, d := range targets {
				if !portRef(d.Spec.Template.Spec.Containers, *port.Port, proto) {
					p.add("%s: port %s is not a containerPort of Deployment %s", id, port.Port.String(), d.Name)
				}
			}
		}
	}
}

func emptySelector(s metav1.LabelSelector) bool {
	return len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0
}

// ingressFrom works out who may connect to port of Deployment dst: "*"
// for anyone, else the names of the Deployments of the build allowed, as
// the union of the NetworkPolicies that select dst (none selecting it:
// anyone). Peers given by namespace or IP block count as "*".
func ingressFrom(m *manifest, dst *appsv1.Deployment, port corev1.ContainerPort) []string {
	pod := labels.Set(dst.Spec.Template.Labels)
	selectedBy := 0
	from := map[string]bool{}
	for _, np := range m.netpols {
		if np.Namespace != dst.Namespace || !hasIngressType(np) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(pod) {
			continue
		}
		selectedBy++
		for _, rule := range np.Spec.Ingress {
			if !rulePort(rule.Ports, port) {
				continue
			}
			if len(rule.From) == 0 {
				from["*"] = true
			}
			for _, peer := range rule.From {
				if peer.PodSelector == nil || peer.NamespaceSelector != nil || peer.IPBlock != nil {
					from["*"] = true
					continue
				}
				ps, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err != nil {
					continue
				}
				for _, d := range m.deployments {
					if d.Namespace == dst.Namespace && ps.Matches(labels.Set(d.Spec.Template.Labels)) {
						from[d.Name] = true
					}
				}
			}
		}
	}
	if selectedBy == 0 || from["*"] {
		return []string{"*"}
	}
	out := sortedKeys(from)
	sort.Strings(out)
	return out
}

func hasIngressType(np *networkingv1.NetworkPolicy) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return true
	}
	for _, t := range np.Spec.PolicyTypes {
		if t == networkingv1.PolicyTypeIngress {
			return true
		}
	}
	return false
}

func rulePort(ports []networkingv1.NetworkPolicyPort, cp corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, np := range ports {
		proto := corev1.ProtocolTCP
		if np.Protocol != nil {
			proto = *np.Protocol
		}
		cproto := cp.Protocol
		if cproto == "" {
			cproto = corev1.ProtocolTCP
		}
		if proto != cproto {
			continue
		}
		if np.Port == nil {
			return true
		}
		switch np.Port.Type {
		case intstr.String:
			if np.Port.StrVal == cp.Name {
				return true
			}
		case intstr.Int:
			end := np.Port.IntVal
			if np.EndPort != nil {
				end = *np.EndPort
			}
			if cp.ContainerPort >= np.Port.IntVal && cp.ContainerPort <= end {
				return true
			}
		}
	}
	return false
}

// describePort names a container port for messages.
func describePort(d *appsv1.Deployment, cp corev1.ContainerPort) string {
	return fmt.Sprintf("%s:%s", d.Name, strings.TrimSpace(cp.Name+" "+strconv.Itoa(int(cp.ContainerPort))))
}
