package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"istio.io/istio/pkg/kube/controllers"
	"istio.io/istio/pkg/kube/kclient"
	"istio.io/istio/pkg/kube/krt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	sdk "github.com/kgateway-dev/kgateway/v2/pkg/pluginsdk"
	"github.com/kgateway-dev/kgateway/v2/pkg/pluginsdk/collections"
	"github.com/kgateway-dev/kgateway/v2/pkg/pluginsdk/filters"
	"github.com/kgateway-dev/kgateway/v2/pkg/pluginsdk/ir"
	"github.com/kgateway-dev/kgateway/v2/pkg/pluginsdk/reporter"

	"github.com/llm-picker/endpoint-picker/kgateway/api/v1alpha1"
)

// Factory is the plugin for `setup.WithExtraPlugins`: it watches EndpointPickerPolicy objects
// and contributes their translation to kgateway's gateways.
func Factory(_ context.Context, commoncol *collections.CommonCollections, _ string) []sdk.Plugin {
	filter := kclient.Filter{ObjectFilter: commoncol.Client.ObjectFilter()}
	// A dynamic informer: the policy needs no generated clientset, only its CRD installed.
	raw := krt.WrapClient(kclient.NewDynamic(commoncol.Client, v1alpha1.Resource, filter),
		commoncol.KrtOpts.ToOptions("EndpointPickerPolicies")...)
	policies := krt.NewCollection(raw, func(_ krt.HandlerContext, obj controllers.Object) *ir.PolicyWrapper {
		return Wrap(obj)
	}, commoncol.KrtOpts.ToOptions("EndpointPickerPolicyIR")...)
	return []sdk.Plugin{{
		ContributesPolicies: sdk.ContributesPolicies{
			v1alpha1.GroupKind: PolicyPlugin(policies),
		},
	}}
}

// PolicyPlugin is the SDK policy plugin over a collection of wrapped policies.
func PolicyPlugin(policies krt.Collection[ir.PolicyWrapper]) sdk.PolicyPlugin {
	return sdk.PolicyPlugin{
		Name: "endpoint-picker",
		NewGatewayTranslationPass: func(ir.GwTranslationCtx, reporter.Reporter) ir.ProxyTranslationPass {
			return NewPass()
		},
		ProcessBackend: ProcessBackend,
		Policies:       policies,
	}
}

// Wrap turns an EndpointPickerPolicy object (typed or as the dynamic informer delivers it) into
// kgateway's policy wrapper; a policy that does not validate is still wrapped, with its error,
// so kgateway reports it and skips it. Returns nil for an object of another type.
func Wrap(obj controllers.Object) *ir.PolicyWrapper {
	var p v1alpha1.EndpointPickerPolicy
	switch o := obj.(type) {
	case *v1alpha1.EndpointPickerPolicy:
		p = *o
	case *unstructured.Unstructured:
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
			slog.Error("endpoint picker policy: cannot decode", "namespace", o.GetNamespace(), "name", o.GetName(), "error", err)
			return nil
		}
	default:
		return nil
	}
	w := &ir.PolicyWrapper{
		ObjectSource: ir.ObjectSource{Group: v1alpha1.Group, Kind: v1alpha1.Kind, Namespace: p.Namespace, Name: p.Name},
		Policy:       obj,
	}
	for _, t := range p.Spec.TargetRefs {
		w.TargetRefs = append(w.TargetRefs, ir.PolicyRef{Group: string(t.Group), Kind: string(t.Kind), Name: string(t.Name)})
	}
	policy, err := FromSpec(p.Namespace, p.Name, p.Spec)
	if err != nil {
		w.Errors = []error{fmt.Errorf("EndpointPickerPolicy %s/%s: %w", p.Namespace, p.Name, err)}
		w.PolicyIR = &PolicyIR{created: p.CreationTimestamp.Time}
		return w
	}
	canon, _ := json.Marshal(policy)
	w.PolicyIR = &PolicyIR{policy: policy, created: p.CreationTimestamp.Time, canonical: string(canon)}
	return w
}

// PolicyIR is the policy as kgateway carries it between collections and translation passes.
type PolicyIR struct {
	policy    *Policy
	created   time.Time
	canonical string
}

// CreationTime orders several policies on one target (oldest first).
func (p *PolicyIR) CreationTime() time.Time { return p.created }

// Equals tells kgateway's collections whether a policy changed.
func (p *PolicyIR) Equals(other any) bool {
	o, ok := other.(*PolicyIR)
	return ok && o.created.Equal(p.created) && o.canonical == p.canonical
}

// Policy is the validated policy, nil when it did not validate.
func (p *PolicyIR) Policy() *Policy { return p.policy }

// NewPolicyIR wraps a validated policy (for tests and for callers building IR directly).
func NewPolicyIR(p *Policy, created time.Time) *PolicyIR {
	canon, _ := json.Marshal(p)
	return &PolicyIR{policy: p, created: created, canonical: string(canon)}
}

// ProcessBackend sets up a targeted Service's cluster to honour the picker's choice.
func ProcessBackend(_ context.Context, pol ir.PolicyIR, in ir.BackendObjectIR, out *clusterv3.Cluster) {
	p, ok := pol.(*PolicyIR)
	if !ok || p.policy == nil {
		return
	}
	if err := HonourDestination(p.policy.Module, out); err != nil {
		slog.Error("endpoint picker policy: cluster", "cluster", out.GetName(), "backend", in.ResourceName(), "error", err)
	}
}

// Pass is one gateway's translation: it remembers which policies the routes of each filter
// chain carry (and the cluster those routes send to), then adds one disabled picker filter per
// policy to that chain, enabled on exactly those routes.
type Pass struct {
	ir.UnimplementedProxyTranslationPass
	// chains: filter chain name → policy filter name → what the filter needs.
	chains map[string]map[string]*chainPolicy
}

type chainPolicy struct {
	policy  *Policy
	cluster string
	err     error
}

// NewPass is an empty translation pass.
func NewPass() *Pass { return &Pass{chains: map[string]map[string]*chainPolicy{}} }

// ApplyForRoute enables the policy's filter on the route and records the route's backend
// cluster as the policy's pool (one pool per policy: routes of one policy with different
// backends are an error, reported on the route).
func (s *Pass) ApplyForRoute(pCtx *ir.RouteContext, _ *routev3.Route) error {
	p, ok := pCtx.Policy.(*PolicyIR)
	if !ok || p.policy == nil {
		return nil
	}
	cluster := ""
	if len(pCtx.In.Backends) > 0 {
		cluster = pCtx.In.Backends[0].Backend.ClusterName
	}
	return s.Enable(pCtx.FilterChainName, p.policy, cluster, &pCtx.TypedFilterConfig)
}

// Enable is [Pass.ApplyForRoute] without kgateway's route context: the route (whose per-filter
// configuration is perRoute) on filterChain sends to cluster.
func (s *Pass) Enable(filterChain string, p *Policy, cluster string, perRoute *ir.TypedFilterConfigMap) error {
	byName := s.chains[filterChain]
	if byName == nil {
		byName = map[string]*chainPolicy{}
		s.chains[filterChain] = byName
	}
	cp := byName[p.FilterName()]
	if cp == nil {
		cp = &chainPolicy{policy: p, cluster: cluster}
		byName[p.FilterName()] = cp
	} else if cp.cluster != cluster {
		return fmt.Errorf("EndpointPickerPolicy %s/%s: its routes send to two pools (%s, %s); one policy schedules one pool", p.Namespace, p.Name, cp.cluster, cluster)
	}
	perRoute.AddTypedConfig(p.FilterName(), EnableOnRoute())
	return nil
}

// HttpFilters adds the chain's picker filters, just before the router: after authentication,
// rate limits and request transformations, so only admitted requests are scheduled.
func (s *Pass) HttpFilters(_ ir.HttpFiltersContext, fc ir.FilterChainCommon) ([]filters.StagedHttpFilter, error) {
	return s.Filters(fc.FilterChainName)
}

// Filters is [Pass.HttpFilters] by filter chain name (sorted by filter name).
func (s *Pass) Filters(filterChain string) ([]filters.StagedHttpFilter, error) {
	byName := s.chains[filterChain]
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]filters.StagedHttpFilter, 0, len(names))
	for _, n := range names {
		cp := byName[n]
		f, err := cp.policy.HTTPFilter(cp.cluster)
		if err != nil {
			return nil, fmt.Errorf("EndpointPickerPolicy %s/%s: %w", cp.policy.Namespace, cp.policy.Name, err)
		}
		out = append(out, filters.StagedHttpFilter{Filter: f, Stage: filters.BeforeStage(filters.RouteStage)})
	}
	return out, nil
}
