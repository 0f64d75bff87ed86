// Package plugin is the EndpointPickerPolicy plugin for kgateway's controller: it turns each
// policy into the picker's HTTP filter on kgateway's own listeners (enabled only on the routes
// the policy targets) and makes the targeted Services' clusters send every request to the
// endpoint the picker chose.
//
// This file holds the translation itself (policy → Envoy protos), with no kgateway types, so
// it is tested on its own and by running its output in a real Envoy (envoy_test.go);
// plugin.go wires it into kgateway's plugin SDK.
package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dynmodv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/dynamic_modules/v3"
	dynmodfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_modules/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	dynmodlbv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/dynamic_modules/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/llm-picker/endpoint-picker/kgateway/api/v1alpha1"
)

// DestinationHeader carries the picked endpoint (`ip:port`) from the picker filter to the
// cluster's override_host balancer; the same name GIE's endpoint picker protocol uses.
const DestinationHeader = "x-gateway-destination-endpoint"

// FilterRootID is the picker's root id (Wasm) and filter name (native module).
const FilterRootID = "endpoint-picker"

// DefaultNativeModule is the stock native module's library name (libendpoint_picker.so).
const DefaultNativeModule = "endpoint_picker"

// PoolMembershipPolicy is the native module's load-balancing policy: round robin for requests
// without a destination, and it reports the cluster's hosts to the picker (the pool follows EDS).
const PoolMembershipPolicy = "pool-membership"

// Policy is one EndpointPickerPolicy after validation: what the translation needs.
type Policy struct {
	// Namespace and Name of the policy object.
	Namespace, Name string
	// Module is the picker build and its location.
	Module v1alpha1.Module
	// Config is the picker JSON as the user wrote it (an object).
	Config map[string]any
	// FailOpen: the Wasm VM's failure lets requests through unpicked.
	FailOpen bool
}

// FromSpec validates a policy spec. Errors: an unknown module type, a missing module location,
// or a config that is not a JSON object.
func FromSpec(namespace, name string, spec v1alpha1.EndpointPickerPolicySpec) (*Policy, error) {
	p := &Policy{Namespace: namespace, Name: name, Module: spec.Module, FailOpen: spec.FailureMode == v1alpha1.FailOpen}
	switch spec.Module.Type {
	case v1alpha1.ModuleWasm:
		if spec.Module.Wasm == nil || !strings.HasPrefix(spec.Module.Wasm.Path, "/") {
			return nil, errors.New("module.wasm.path: an absolute path in the proxy container is required")
		}
	case v1alpha1.ModuleNative:
		if spec.Module.Native == nil {
			p.Module.Native = &v1alpha1.NativeModule{}
		} else {
			native := *spec.Module.Native
			p.Module.Native = &native
		}
		if p.Module.Native.Name == "" {
			p.Module.Native.Name = DefaultNativeModule
		}
	default:
		return nil, fmt.Errorf("module.type %q: Wasm or Native", spec.Module.Type)
	}
	if len(spec.Config.Raw) == 0 {
		p.Config = map[string]any{}
	} else if err := json.Unmarshal(spec.Config.Raw, &p.Config); err != nil || p.Config == nil {
		return nil, fmt.Errorf("config: not a JSON object: %v", err)
	}
	return p, nil
}

// FilterName is the HTTP filter's name in the connection manager (one per policy, so several
// policies on one listener do not collide): endpoint-picker/<namespace>/<name>.
func (p *Policy) FilterName() string {
	return FilterRootID + "/" + p.Namespace + "/" + p.Name
}

// PickerJSON is the configuration the module reads: the policy's config with `pool.cluster`
// set to poolCluster unless the config names one. Errors: a `pool` that is not an object.
func (p *Policy) PickerJSON(poolCluster string) (string, error) {
	cfg := make(map[string]any, len(p.Config)+1)
	for k, v := range p.Config {
		cfg[k] = v
	}
	pool := map[string]any{}
	if raw, ok := cfg["pool"]; ok {
		m, ok := raw.(map[string]any)
		if !ok {
			return "", errors.New("config.pool: not an object")
		}
		for k, v := range m {
			pool[k] = v
		}
	}
	if c, _ := pool["cluster"].(string); c == "" && poolCluster != "" {
		pool["cluster"] = poolCluster
	}
	cfg["pool"] = pool
	out, err := json.Marshal(cfg)
	return string(out), err
}

// HTTPFilter is the picker's filter for the connection manager, disabled by default: the routes
// the policy targets enable it with [EnableOnRoute]. poolCluster is the targeted routes' backend
// cluster (see [Policy.PickerJSON]).
func (p *Policy) HTTPFilter(poolCluster string) (*hcmv3.HttpFilter, error) {
	picker, err := p.PickerJSON(poolCluster)
	if err != nil {
		return nil, err
	}
	config, err := anypb.New(wrapperspb.String(picker))
	if err != nil {
		return nil, err
	}
	var typed proto.Message
	switch p.Module.Type {
	case v1alpha1.ModuleNative:
		typed = &dynmodfilterv3.DynamicModuleFilter{
			// do_not_close keeps the library mapped, so every worker's filter and the filter
			// configuration's scraper share one process-wide state.
			DynamicModuleConfig: &dynmodv3.DynamicModuleConfig{Name: p.Module.Native.Name, DoNotClose: true},
			FilterName:          FilterRootID,
			FilterConfig:        config,
		}
	default:
		failure := wasmv3.FailurePolicy_FAIL_RELOAD
		if p.FailOpen {
			failure = wasmv3.FailurePolicy_FAIL_OPEN
		}
		// One vm_id per policy: shared data (the metrics snapshot, the scraper lease) is keyed
		// by it, so the standby scrapers of this policy's VMs elect one scraper among themselves.
		vmID := p.FilterName()
		typed = &wasmfilterv3.Wasm{Config: &wasmv3.PluginConfig{
			Name:   FilterRootID,
			RootId: FilterRootID,
			Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
				VmId:    vmID,
				Runtime: "envoy.wasm.runtime.v8",
				Code: &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Local{
					Local: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: p.Module.Wasm.Path}},
				}},
			}},
			Configuration: config,
			// Body-based picking: pause at the headers and still receive the body.
			AllowOnHeadersStopIteration: wrapperspb.Bool(true),
			FailurePolicy:               failure,
		}}
	}
	a, err := anypb.New(typed)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{
		Name:       p.FilterName(),
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a},
		Disabled:   true,
	}, nil
}

// EnableOnRoute is the route's typed_per_filter_config entry that turns the disabled filter on
// (an empty config with disabled unset enables a filter the connection manager disabled).
func EnableOnRoute() *routev3.FilterConfig {
	return &routev3.FilterConfig{Config: &anypb.Any{}}
}

// HonourDestination makes cluster out send each request to the endpoint named in
// [DestinationHeader] (Envoy's override_host balancer: only the cluster's own hosts can be
// chosen; each retry takes the next address of the list). Without the header (FailOpen, or a
// route the picker is not on) the fallback chooses: least request for the Wasm build, the
// native module's pool-membership balancer for the native build (which also reports the
// cluster's hosts to the picker). The cluster keeps its discovery (EDS from kgateway).
func HonourDestination(module v1alpha1.Module, out *clusterv3.Cluster) error {
	var fallback *corev3.TypedExtensionConfig
	switch module.Type {
	case v1alpha1.ModuleNative:
		name := DefaultNativeModule
		if module.Native != nil && module.Native.Name != "" {
			name = module.Native.Name
		}
		cfg, err := anypb.New(&dynmodlbv3.DynamicModulesLoadBalancerConfig{
			DynamicModuleConfig: &dynmodv3.DynamicModuleConfig{Name: name, DoNotClose: true},
			LbPolicyName:        PoolMembershipPolicy,
		})
		if err != nil {
			return err
		}
		fallback = &corev3.TypedExtensionConfig{Name: "envoy.load_balancing_policies.dynamic_modules", TypedConfig: cfg}
	default:
		cfg, err := anypb.New(&leastrequestv3.LeastRequest{})
		if err != nil {
			return err
		}
		fallback = &corev3.TypedExtensionConfig{Name: "envoy.load_balancing_policies.least_request", TypedConfig: cfg}
	}
	override, err := anypb.New(&overridehostv3.OverrideHost{
		OverrideHostSources: []*overridehostv3.OverrideHost_OverrideHostSource{{Header: DestinationHeader}},
		FallbackPolicy: &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{
			{TypedExtensionConfig: fallback},
		}},
	})
	if err != nil {
		return err
	}
	// load_balancing_policy replaces lb_policy; clear what only applies to the old one.
	out.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	out.LbConfig = nil
	out.LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{Policies: []*clusterv3.LoadBalancingPolicy_Policy{
		{TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: "envoy.load_balancing_policies.override_host", TypedConfig: override}},
	}}
	return nil
}
