package plugin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dynmodfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_modules/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	dynmodlbv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/dynamic_modules/v3"
	overridehostv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/override_host/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kgateway-dev/kgateway/v2/pkg/pluginsdk/filters"
	"github.com/kgateway-dev/kgateway/v2/pkg/pluginsdk/ir"

	"github.com/llm-picker/endpoint-picker/kgateway/api/v1alpha1"
)

func spec(module v1alpha1.Module, config string) v1alpha1.EndpointPickerPolicySpec {
	return v1alpha1.EndpointPickerPolicySpec{
		TargetRefs: []v1alpha1.PolicyTargetReference{{Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "llm"}},
		Module:     module,
		Config:     apiextensionsv1.JSON{Raw: []byte(config)},
	}
}

var wasmModule = v1alpha1.Module{Type: v1alpha1.ModuleWasm, Wasm: &v1alpha1.WasmModule{Path: "/opt/llm-picker/plugin.wasm"}}

func mustPolicy(t *testing.T, s v1alpha1.EndpointPickerPolicySpec) *Policy {
	t.Helper()
	p, err := FromSpec("llm", "picker", s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFromSpecRefusesWhatCannotLoad(t *testing.T) {
	cases := map[string]struct {
		spec v1alpha1.EndpointPickerPolicySpec
		want string
	}{
		"wasm without a path":  {spec(v1alpha1.Module{Type: v1alpha1.ModuleWasm}, `{}`), "module.wasm.path"},
		"relative wasm path":   {spec(v1alpha1.Module{Type: v1alpha1.ModuleWasm, Wasm: &v1alpha1.WasmModule{Path: "plugin.wasm"}}, `{}`), "absolute"},
		"unknown module type":  {spec(v1alpha1.Module{Type: "Lua"}, `{}`), "Wasm or Native"},
		"config not an object": {spec(wasmModule, `[1,2]`), "not a JSON object"},
		"config null":          {spec(wasmModule, `null`), "not a JSON object"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := FromSpec("llm", "p", c.spec)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestNativeModuleDefaultsToTheStockLibrary(t *testing.T) {
	p := mustPolicy(t, spec(v1alpha1.Module{Type: v1alpha1.ModuleNative}, `{}`))
	if p.Module.Native.Name != DefaultNativeModule {
		t.Fatalf("name %q", p.Module.Native.Name)
	}
}

func TestPickerJSONFillsThePoolClusterOnlyWhenMissing(t *testing.T) {
	p := mustPolicy(t, spec(wasmModule, `{"pool": {"endpoints": [{"address": "10.0.0.1:8000"}]}, "plugins": []}`))
	var got map[string]any
	text, err := p.PickerJSON("kube_llm_vllm_8000")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(text), &got); err != nil {
		t.Fatal(err)
	}
	pool := got["pool"].(map[string]any)
	if pool["cluster"] != "kube_llm_vllm_8000" || len(pool["endpoints"].([]any)) != 1 {
		t.Fatalf("pool %v", pool)
	}
	if _, ok := got["plugins"]; !ok {
		t.Fatal("other fields kept")
	}
	// The user's own cluster wins; the policy's config is not modified.
	p = mustPolicy(t, spec(wasmModule, `{"pool": {"cluster": "mine"}}`))
	text, _ = p.PickerJSON("kube_llm_vllm_8000")
	if !strings.Contains(text, `"cluster":"mine"`) {
		t.Fatal(text)
	}
	if _, err := mustPolicy(t, spec(wasmModule, `{"pool": 3}`)).PickerJSON("c"); err == nil {
		t.Fatal("a pool that is not an object is an error")
	}
}

func TestWasmFilterBuffersBodiesAndFailsClosed(t *testing.T) {
	p := mustPolicy(t, spec(wasmModule, `{"pool": {}}`))
	f, err := p.HTTPFilter("kube_llm_vllm_8000")
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "endpoint-picker/llm/picker" || !f.Disabled {
		t.Fatalf("filter %s disabled=%v: one name per policy, off unless a route enables it", f.Name, f.Disabled)
	}
	var w wasmfilterv3.Wasm
	if err := f.GetTypedConfig().UnmarshalTo(&w); err != nil {
		t.Fatal(err)
	}
	c := w.GetConfig()
	if c.GetRootId() != FilterRootID || !c.GetAllowOnHeadersStopIteration().GetValue() || c.GetFailurePolicy() != wasmv3.FailurePolicy_FAIL_RELOAD {
		t.Fatalf("config %v", c)
	}
	vm := c.GetVmConfig()
	if vm.GetVmId() != "endpoint-picker/llm/picker" || vm.GetCode().GetLocal().GetFilename() != "/opt/llm-picker/plugin.wasm" {
		t.Fatalf("vm %v", vm)
	}
	var s wrapperspb.StringValue
	if err := c.GetConfiguration().UnmarshalTo(&s); err != nil || !strings.Contains(s.Value, "kube_llm_vllm_8000") {
		t.Fatalf("configuration %q %v", s.Value, err)
	}

	open := spec(wasmModule, `{}`)
	open.FailureMode = v1alpha1.FailOpen
	f, _ = mustPolicy(t, open).HTTPFilter("c")
	_ = f.GetTypedConfig().UnmarshalTo(&w)
	if w.GetConfig().GetFailurePolicy() != wasmv3.FailurePolicy_FAIL_OPEN {
		t.Fatal("FailOpen")
	}
}

func TestNativeFilterSharesTheLibrary(t *testing.T) {
	p := mustPolicy(t, spec(v1alpha1.Module{Type: v1alpha1.ModuleNative, Native: &v1alpha1.NativeModule{Name: "my_picker"}}, `{}`))
	f, err := p.HTTPFilter("kube_llm_vllm_8000")
	if err != nil {
		t.Fatal(err)
	}
	var d dynmodfilterv3.DynamicModuleFilter
	if err := f.GetTypedConfig().UnmarshalTo(&d); err != nil {
		t.Fatal(err)
	}
	if d.GetDynamicModuleConfig().GetName() != "my_picker" || !d.GetDynamicModuleConfig().GetDoNotClose() || d.GetFilterName() != FilterRootID {
		t.Fatalf("filter %v", &d)
	}
}

func overrideOf(t *testing.T, c *clusterv3.Cluster) *overridehostv3.OverrideHost {
	t.Helper()
	pols := c.GetLoadBalancingPolicy().GetPolicies()
	if len(pols) != 1 || pols[0].GetTypedExtensionConfig().GetName() != "envoy.load_balancing_policies.override_host" {
		t.Fatalf("policies %v", pols)
	}
	var o overridehostv3.OverrideHost
	if err := pols[0].GetTypedExtensionConfig().GetTypedConfig().UnmarshalTo(&o); err != nil {
		t.Fatal(err)
	}
	if len(o.GetOverrideHostSources()) != 1 || o.GetOverrideHostSources()[0].GetHeader() != DestinationHeader {
		t.Fatalf("sources %v", o.GetOverrideHostSources())
	}
	return &o
}

func TestClustersHonourTheDestinationHeader(t *testing.T) {
	c := &clusterv3.Cluster{Name: "kube_llm_vllm_8000", LbPolicy: clusterv3.Cluster_RING_HASH,
		LbConfig: &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}}
	if err := HonourDestination(wasmModule, c); err != nil {
		t.Fatal(err)
	}
	if c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN || c.LbConfig != nil {
		t.Fatal("the old balancer's settings are cleared")
	}
	fb := overrideOf(t, c).GetFallbackPolicy().GetPolicies()[0].GetTypedExtensionConfig()
	if fb.GetName() != "envoy.load_balancing_policies.least_request" {
		t.Fatalf("wasm fallback %s", fb.GetName())
	}

	c = &clusterv3.Cluster{Name: "kube_llm_vllm_8000"}
	if err := HonourDestination(v1alpha1.Module{Type: v1alpha1.ModuleNative}, c); err != nil {
		t.Fatal(err)
	}
	fb = overrideOf(t, c).GetFallbackPolicy().GetPolicies()[0].GetTypedExtensionConfig()
	var lb dynmodlbv3.DynamicModulesLoadBalancerConfig
	if err := fb.GetTypedConfig().UnmarshalTo(&lb); err != nil {
		t.Fatal(err)
	}
	if lb.GetLbPolicyName() != PoolMembershipPolicy || lb.GetDynamicModuleConfig().GetName() != DefaultNativeModule {
		t.Fatalf("native fallback %v", &lb)
	}
}

func TestProcessBackendSkipsAPolicyThatDidNotValidate(t *testing.T) {
	c := &clusterv3.Cluster{Name: "x"}
	ProcessBackend(t.Context(), &PolicyIR{}, ir.BackendObjectIR{}, c)
	if c.LoadBalancingPolicy != nil {
		t.Fatal("an invalid policy changes nothing")
	}
	ProcessBackend(t.Context(), NewPolicyIR(mustPolicy(t, spec(wasmModule, `{}`)), time.Now()), ir.BackendObjectIR{}, c)
	overrideOf(t, c)
}

func TestPassEnablesOneFilterPerPolicyOnItsRoutesOnly(t *testing.T) {
	a := mustPolicy(t, spec(wasmModule, `{}`))
	b, _ := FromSpec("llm", "another", spec(wasmModule, `{}`))
	pass := NewPass()
	var r1, r2, r3 ir.TypedFilterConfigMap
	for _, step := range []struct {
		p   *Policy
		m   *ir.TypedFilterConfigMap
		cls string
	}{{a, &r1, "kube_llm_vllm_8000"}, {a, &r2, "kube_llm_vllm_8000"}, {b, &r3, "kube_llm_other_8000"}} {
		if err := pass.Enable("listener~80", step.p, step.cls, step.m); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []ir.TypedFilterConfigMap{r1, r2} {
		fc, ok := m.GetTypedConfig(a.FilterName()).(*routev3.FilterConfig)
		if !ok || fc.Disabled || fc.Config == nil {
			t.Fatalf("route config %v", m)
		}
	}
	if r3.GetTypedConfig(a.FilterName()) != nil {
		t.Fatal("a route of another policy does not enable this one")
	}
	got, err := pass.Filters("listener~80")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Filter.Name != "endpoint-picker/llm/another" || got[1].Filter.Name != "endpoint-picker/llm/picker" {
		t.Fatalf("filters %v", got)
	}
	for _, f := range got {
		if f.Stage != filters.BeforeStage(filters.RouteStage) || !f.Filter.Disabled {
			t.Fatalf("stage %v disabled %v", f.Stage, f.Filter.Disabled)
		}
	}
	if f, _ := pass.Filters("listener~443"); len(f) != 0 {
		t.Fatal("a chain without the policy's routes gets no filter")
	}
	// One policy, one pool.
	if err := pass.Enable("listener~80", a, "kube_llm_elsewhere_8000", &r1); err == nil || !strings.Contains(err.Error(), "two pools") {
		t.Fatalf("error %v", err)
	}
}

func TestWrapDecodesTheDynamicInformersObjects(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "picker.llm-picker.io/v1alpha1", "kind": "EndpointPickerPolicy",
		"metadata": map[string]any{"name": "picker", "namespace": "llm"},
		"spec": map[string]any{
			"targetRefs": []any{
				map[string]any{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "llm"},
				map[string]any{"group": "", "kind": "Service", "name": "vllm"},
			},
			"module": map[string]any{"type": "Native"},
			"config": map[string]any{"pool": map[string]any{"scrape": map[string]any{"interval": "50ms"}}},
		},
	}}
	w := Wrap(u)
	if w == nil || len(w.Errors) != 0 || len(w.TargetRefs) != 2 || w.TargetRefs[1].Kind != "Service" {
		t.Fatalf("wrapper %+v", w)
	}
	p := w.PolicyIR.(*PolicyIR).Policy()
	if p.Module.Native.Name != DefaultNativeModule || p.Config["pool"] == nil {
		t.Fatalf("policy %+v", p)
	}
	if !w.PolicyIR.Equals(Wrap(u).PolicyIR) {
		t.Fatal("the same object gives an equal IR")
	}
	u.Object["spec"].(map[string]any)["module"] = map[string]any{"type": "Wasm"}
	w = Wrap(u)
	if len(w.Errors) != 1 || w.PolicyIR.(*PolicyIR).Policy() != nil {
		t.Fatalf("an invalid policy carries its error: %+v", w)
	}
}
