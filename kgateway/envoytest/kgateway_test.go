// Package envoytest runs kgateway's own translator (its golden-test harness, with a fake
// Kubernetes client) with the EndpointPickerPolicy plugin over a user's manifests, checks the
// xDS it emits, and then runs that xDS in a real Envoy 1.40 with the picker module, routing
// chat completions to the endpoint the picker chose.
//
// Environment: ENVOY_BIN (Envoy 1.40), PICKER_WASM (the .wasm), PICKER_NATIVE_DIR (the directory
// holding libendpoint_picker.so). `make kgateway-test` sets all three; without ENVOY_BIN the
// Envoy runs are skipped and say so.
package envoytest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"istio.io/istio/pkg/kube"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kgateway-dev/kgateway/v2/pkg/apiclient"
	"github.com/kgateway-dev/kgateway/v2/pkg/apiclient/fake"
	"github.com/kgateway-dev/kgateway/v2/pkg/utils/kubeutils"
	"github.com/kgateway-dev/kgateway/v2/test/testutils"
	translatortest "github.com/kgateway-dev/kgateway/v2/test/translator"

	"github.com/llm-picker/endpoint-picker/kgateway/api/v1alpha1"
	"github.com/llm-picker/endpoint-picker/kgateway/plugin"
)

// Translated is what kgateway would push to the gateway's proxy.
type Translated struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
}

// newClient is kgateway's fake client with the policies added the way the real controller
// sees them: through the dynamic client our informer reads (our type is unknown to the typed
// clientsets).
func newClient(t *testing.T, objs ...client.Object) apiclient.Client {
	var rest []client.Object
	var ours []client.Object
	for _, o := range objs {
		if _, ok := o.(*v1alpha1.EndpointPickerPolicy); ok {
			ours = append(ours, o)
		} else {
			rest = append(rest, o)
		}
	}
	c := fake.NewClientWithExtraGVRs(t, []schema.GroupVersionResource{v1alpha1.Resource}, rest...)
	for _, o := range ours {
		u, err := kubeutils.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Dynamic().Resource(v1alpha1.Resource).Namespace(o.GetNamespace()).Create(context.Background(), u, metav1CreateOptions); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func init() {
	// The fake dynamic client lists only the kinds its scheme knows.
	if err := v1alpha1.AddToScheme(kube.FakeIstioScheme); err != nil {
		panic(err)
	}
}

// translate renders the template with module (YAML lines, indented under `module:`) and the
// picker configuration (JSON) and runs kgateway's translator with our plugin over it.
func translate(t *testing.T, module, config string) Translated {
	t.Helper()
	tmpl, err := os.ReadFile("testdata/llm.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(tmpl), "{{MODULE}}", module)
	text = strings.ReplaceAll(text, "{{CONFIG}}", config)
	input := filepath.Join(t.TempDir(), "llm.yaml")
	if err := os.WriteFile(input, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	schemas, err := testutils.GetStructuralSchemas("../crd")
	if err != nil {
		t.Fatal(err)
	}
	tc := translatortest.TestCase{InputFiles: []string{input}}
	extra := translatortest.ExtraConfig{
		NewClientFn:           newClient,
		PluginsFn:             plugin.Factory,
		Schemes:               runtime.SchemeBuilder{v1alpha1.AddToScheme},
		GVKToStructuralSchema: schemas,
	}
	results, err := tc.Run(t, t.Context(), translatortest.NewScheme(extra.Schemes), extra)
	if err != nil {
		t.Fatal(err)
	}
	gw := types.NamespacedName{Namespace: "llm", Name: "llm-gw"}
	r, ok := results[gw]
	if !ok || r.Proxy == nil {
		t.Fatalf("no translation for %s: %v", gw, results)
	}
	// The policy was loaded and attached (a document that does not parse is skipped with a
	// warning, which would leave nothing of ours to test).
	attached := false
	for ref := range r.ReportsMap.Policies {
		attached = attached || (ref.Kind == v1alpha1.Kind && ref.Name == "picker")
	}
	if !attached {
		t.Fatalf("the EndpointPickerPolicy was not attached: %v", r.ReportsMap.Policies)
	}
	return Translated{Listeners: r.Proxy.Listeners, Routes: r.Proxy.Routes, Clusters: append(r.Clusters, r.Proxy.ExtraClusters...)}
}

// pickerConfig is the picker JSON of the tests: the default GIE profile (queue, KV cache,
// prefix cache), fast scrapes, the debug header on, and the endpoints (none: the native build
// follows the cluster).
func pickerConfig(endpoints []string) string {
	pool := map[string]any{
		"scrape": map[string]any{"interval": "50ms", "timeout": "1s", "staleness": "2s"},
		"debug":  true,
	}
	if len(endpoints) > 0 {
		eps := make([]any, 0, len(endpoints))
		for _, e := range endpoints {
			eps = append(eps, map[string]any{"address": e})
		}
		pool["endpoints"] = eps
	}
	cfg := map[string]any{
		"pool": pool,
		"plugins": []any{
			map[string]any{"type": "queue-scorer"},
			map[string]any{"type": "kv-cache-utilization-scorer"},
			map[string]any{"type": "prefix-cache-scorer"},
		},
		"schedulingProfiles": []any{map[string]any{"name": "default", "plugins": []any{
			map[string]any{"pluginRef": "queue-scorer", "weight": 2},
			map[string]any{"pluginRef": "kv-cache-utilization-scorer", "weight": 2},
			map[string]any{"pluginRef": "prefix-cache-scorer", "weight": 3},
		}}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return string(b)
}

const wasmModuleYAML = "    type: Wasm\n    wasm:\n      path: /opt/llm-picker/plugin.wasm"
const nativeModuleYAML = "    type: Native"

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			var h hcmv3.HttpConnectionManager
			if f.GetTypedConfig().MessageIs(&h) {
				if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
					t.Fatal(err)
				}
				return &h
			}
		}
	}
	t.Fatalf("listener %s has no connection manager", l.GetName())
	return nil
}

func routeFor(t *testing.T, tr Translated, prefix string) *routev3.Route {
	t.Helper()
	for _, rc := range tr.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if r.GetMatch().GetPrefix() == prefix || r.GetMatch().GetPathSeparatedPrefix() == strings.TrimSuffix(prefix, "/") {
					return r
				}
			}
		}
	}
	t.Fatalf("no route for %s in %v", prefix, tr.Routes)
	return nil
}

func TestKgatewayTranslatesThePolicyIntoItsOwnListener(t *testing.T) {
	for _, c := range []struct{ name, module, fallback string }{
		{"wasm", wasmModuleYAML, "least_request"},
		{"native", nativeModuleYAML, "dynamic_modules"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := translate(t, c.module, pickerConfig([]string{"10.0.0.1:8000"}))
			if len(tr.Listeners) != 1 {
				t.Fatalf("listeners %v", tr.Listeners)
			}
			filters := hcmOf(t, tr.Listeners[0]).GetHttpFilters()
			names := make([]string, 0, len(filters))
			for _, f := range filters {
				names = append(names, f.GetName())
			}
			// Our filter, disabled on the listener, before the router.
			at := -1
			for i, f := range filters {
				if f.GetName() == "endpoint-picker/llm/picker" {
					at = i
					if !f.GetDisabled() {
						t.Fatal("the picker filter is disabled unless a route enables it")
					}
				}
			}
			if at < 0 || names[len(names)-1] != "envoy.filters.http.router" || at > len(names)-2 {
				t.Fatalf("http filters %v", names)
			}
			// Enabled on the targeted route only.
			if routeFor(t, tr, "/v1/").GetTypedPerFilterConfig()["endpoint-picker/llm/picker"] == nil {
				t.Fatalf("the targeted route enables the picker: %v", routeFor(t, tr, "/v1/"))
			}
			if routeFor(t, tr, "/plain/").GetTypedPerFilterConfig()["endpoint-picker/llm/picker"] != nil {
				t.Fatal("a route the policy does not target leaves it off")
			}
			// The Service's cluster honours the destination header.
			var found bool
			for _, cl := range tr.Clusters {
				if !strings.Contains(cl.GetName(), "vllm") {
					continue
				}
				found = true
				pols := cl.GetLoadBalancingPolicy().GetPolicies()
				if len(pols) != 1 || pols[0].GetTypedExtensionConfig().GetName() != "envoy.load_balancing_policies.override_host" {
					t.Fatalf("cluster %s: %v", cl.GetName(), cl.GetLoadBalancingPolicy())
				}
				if !strings.Contains(fmt.Sprint(pols[0].GetTypedExtensionConfig().GetTypedConfig()), c.fallback) {
					t.Fatalf("fallback %v", pols[0])
				}
			}
			if !found {
				t.Fatalf("no cluster for the Service: %v", tr.Clusters)
			}
		})
	}
}
