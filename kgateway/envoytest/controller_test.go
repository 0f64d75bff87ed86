package envoytest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	apisettings "github.com/kgateway-dev/kgateway/v2/api/settings"
	"github.com/kgateway-dev/kgateway/v2/pkg/kgateway/setup"
	"github.com/kgateway-dev/kgateway/v2/pkg/validator"

	"github.com/llm-picker/endpoint-picker/kgateway/plugin"
)

// podIP gives this machine the address ip (on the loopback interface, removed after the
// test), so each model server has an address of its own as pods do: the API server refuses
// loopback addresses in EndpointSlices, and kgateway keeps one endpoint per address.
func podIP(t *testing.T, ip string) string {
	t.Helper()
	out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "File exists") {
		t.Skipf("cannot add %s to the loopback interface (needs root with CAP_NET_ADMIN): %v %s", ip, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").Run() })
	return ip
}

// apply creates every document of a YAML text through the dynamic client (mapping kinds to
// resources by the API server's discovery).
func apply(t *testing.T, cfg *rest.Config, text string) {
	t.Helper()
	dyn := dynamic.NewForConfigOrDie(cfg)
	resources := map[string]string{ // kind -> plural, for the kinds this test creates
		"Namespace": "namespaces", "Service": "services", "EndpointSlice": "endpointslices", "Pod": "pods",
		"GatewayClass": "gatewayclasses", "Gateway": "gateways", "HTTPRoute": "httproutes",
		"EndpointPickerPolicy": "endpointpickerpolicies",
	}
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		gvr := gvk.GroupVersion().WithResource(resources[gvk.Kind])
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if ns := u.GetNamespace(); ns != "" {
			ri = dyn.Resource(gvr).Namespace(ns)
		}
		if _, err := ri.Create(context.Background(), &u, metav1CreateOptions); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("create %s %s: %v", gvk.Kind, u.GetName(), err)
		}
	}
}

// TestControllerServesThePolicyToEnvoy runs the whole loop: a Kubernetes API server and etcd
// (envtest, built from the Go module proxy by `make kgateway-test`), this controller build
// (kgateway + the plugin) watching it, a user's manifests applied, and an Envoy 1.40 taking its
// configuration from the controller's xDS server as kgateway's proxy does; a chat completion
// through that Envoy reaches the least-loaded model server the picker chose.
func TestControllerServesThePolicyToEnvoy(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" || os.Getenv("ENVOY_BIN") == "" {
		t.Skip("KUBEBUILDER_ASSETS or ENVOY_BIN is not set: run `make kgateway-test`")
	}
	kgw, err := kgatewayModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths: []string{
			"../crd",
			filepath.Join(kgw, "install/helm/kgateway-crds/templates"),
			"../../envoy-config/deploy/crds/gateway-api",
		},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })

	settings, err := apisettings.BuildSettings()
	if err != nil {
		t.Fatal(err)
	}
	settings.XdsAuth = false // the proxy below has no service-account token
	settings.EnableAgentgateway = false
	settings.DisableLeaderElection = true
	xds, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := setup.New(
		setup.WithRestConfig(cfg),
		setup.WithGlobalSettings(settings),
		setup.WithExtraPlugins(plugin.Factory),
		setup.WithXDSListener(xds),
		setup.WithValidator(validator.NewBinary(os.Getenv("ENVOY_BIN"))),
		setup.WithControllerManagerOptions(func(ctx context.Context) *ctrl.Options {
			return &ctrl.Options{
				BaseContext:            func() context.Context { return ctx },
				Metrics:                metricsserver.Options{BindAddress: "0"},
				HealthProbeBindAddress: "0",
				PprofBindAddress:       "0",
				LeaderElection:         false,
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := s.Start(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("controller: %v", err)
		}
	}()

	servers := []*modelServer{
		startModelServerOn(t, podIP(t, "10.255.0.2"), "pod-a", 9, 0.9),
		startModelServerOn(t, podIP(t, "10.255.0.3"), "pod-b", 0, 0.1),
		startModelServerOn(t, podIP(t, "10.255.0.4"), "pod-c", 9, 0.9),
	}
	apply(t, cfg, `
apiVersion: v1
kind: Namespace
metadata: {name: llm}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: kgateway}
spec: {controllerName: kgateway.dev/kgateway}
`)
	// One EndpointSlice per server (each listens on its own port), all behind the Service's
	// port 8000 named http.
	var slices strings.Builder
	for i, m := range servers {
		host, p, _ := net.SplitHostPort(m.addr)
		fmt.Fprintf(&slices, `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: vllm-%d
  namespace: llm
  labels: {kubernetes.io/service-name: vllm}
addressType: IPv4
ports: [{name: http, port: %s, protocol: TCP}]
endpoints:
- addresses: [%q]
  conditions: {ready: true}
`, i, p, host)
	}
	policy := strings.ReplaceAll(string(mustRead(t, "testdata/llm.yaml.tmpl")), "{{MODULE}}", wasmModule(t))
	policy = strings.ReplaceAll(policy, "{{CONFIG}}", pickerConfig(addrsOf(servers)))
	policy = strings.ReplaceAll(policy, "gatewayClassName: example-gateway-class", "gatewayClassName: kgateway")
	// The Gateway's listener on a free port (kgateway binds the Gateway's port as is).
	gwPort := freePort(t)
	policy = strings.Replace(policy, "    port: 80\n", fmt.Sprintf("    port: %d\n", gwPort), 1)
	apply(t, cfg, policy+"\n"+slices.String()+`---
apiVersion: v1
kind: Pod
metadata: {name: llm-gw-0, namespace: llm, labels: {app: llm-gw}}
spec: {containers: [{name: envoy, image: envoy}]}
`)

	// The proxy, as kgateway's envoyinit starts it: node id <pod>.<namespace>, role metadata,
	// everything else over ADS from the controller.
	admin := freePort(t)
	h2, _ := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{}}}})
	xdsPort := xds.Addr().(*net.TCPAddr).Port
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: "llm-gw-0.llm", Cluster: "llm-gw.llm", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"role": structpb.NewStringValue("kgateway-kube-gateway-api~llm~llm-gw")}}},
		Admin: &bootstrapv3.Admin{Address: socket("127.0.0.1", admin)},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{ApiType: corev3.ApiConfigSource_GRPC, TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "xds"}}}}},
			LdsConfig: ads, CdsConfig: ads,
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{{
			Name: "xds", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:                durationpb.New(time.Second),
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "xds", Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket("127.0.0.1", xdsPort)}}}}}}},
		}}},
	}
	e := runEnvoy(t, b)
	deadline := time.Now().Add(90 * time.Second)
	for e.stat("scrape.success") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the picker never scraped: no configuration from the controller?\nlisteners: %s\nclusters: %s\n%s",
				e.admin("/listeners"), e.admin("/clusters"), e.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	// kgateway's listener for the Gateway's port.
	r := chat(t, gwPort, "/v1/chat/completions", map[string]string{"x-endpoint-picker-debug": "1"})
	if r.StatusCode != 200 || r.Header.Get("x-inference-pod") != "pod-b" {
		t.Fatalf("status %d, served by %q (debug %q), want pod-b\nclusters: %s\n%s", r.StatusCode, r.Header.Get("x-inference-pod"),
			r.Header.Get("x-endpoint-picker-debug"), e.admin("/clusters"), e.logText())
	}
	if !strings.Contains(r.Header.Get("x-endpoint-picker-debug"), "picked=") {
		t.Fatalf("the picker decided: %q", r.Header.Get("x-endpoint-picker-debug"))
	}
	// The Gateway's other route (not targeted): served, not picked.
	r = chat(t, gwPort, "/plain/chat/completions", map[string]string{"x-endpoint-picker-debug": "1"})
	if r.StatusCode != 200 || r.Header.Get("x-endpoint-picker-debug") != "" {
		t.Fatalf("untargeted route: status %d, debug %q", r.StatusCode, r.Header.Get("x-endpoint-picker-debug"))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func addrsOf(servers []*modelServer) []string {
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		out = append(out, s.addr)
	}
	return out
}
