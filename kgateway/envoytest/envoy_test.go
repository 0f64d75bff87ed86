package envoytest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// modelServer is a fake vLLM: Prometheus metrics under vLLM's names (served by the Prometheus
// client library) and a chat completions endpoint that says which server answered.
type modelServer struct {
	name string
	addr string
	srv  *http.Server
}

func startModelServer(t *testing.T, name string, waiting, kv float64) *modelServer {
	t.Helper()
	return startModelServerOn(t, "127.0.0.1", name, waiting, kv)
}

// startModelServerOn is [startModelServer] listening on host.
func startModelServerOn(t *testing.T, host, name string, waiting, kv float64) *modelServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	labels := []string{"model_name"}
	gauge := func(metric, help string, v float64) {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metric, Help: help}, labels)
		reg.MustRegister(g)
		g.WithLabelValues("meta-llama/Llama-3.1-8B-Instruct").Set(v)
	}
	gauge("vllm:num_requests_waiting", "Requests waiting.", waiting)
	gauge("vllm:num_requests_running", "Requests running.", 1)
	gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 1 = 100 %.", kv)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		w.Header().Set("x-inference-pod", name)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "model": "meta-llama/Llama-3.1-8B-Instruct",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": "hello from " + name}}},
			"usage": map[string]any{"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
		})
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	m := &modelServer{name: name, addr: ln.Addr().String(), srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = m.srv.Serve(ln) }()
	t.Cleanup(func() { _ = m.srv.Close() })
	return m
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func socket(host string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}
}

// bootstrap is kgateway's xDS for the gateway as one static Envoy configuration, changed only
// where a static file must differ from what xDS delivers: the listener binds a loopback port,
// its connection manager carries the route configuration inline instead of fetching it by RDS,
// and the Service's EDS cluster lists the model servers statically (kgateway's EDS would push
// the pods). Everything of ours is kept byte for byte.
func bootstrap(t *testing.T, tr Translated, port, admin int, members []string) *bootstrapv3.Bootstrap {
	t.Helper()
	routes := map[string]proto.Message{}
	for _, rc := range tr.Routes {
		routes[rc.GetName()] = rc
	}
	var listeners []*listenerv3.Listener
	for _, l := range tr.Listeners {
		l = proto.Clone(l).(*listenerv3.Listener)
		l.Address = socket("127.0.0.1", port)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				h := &hcmv3.HttpConnectionManager{}
				if !f.GetTypedConfig().MessageIs(h) {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
					t.Fatal(err)
				}
				rc, ok := routes[h.GetRds().GetRouteConfigName()]
				if !ok {
					t.Fatalf("no route configuration %q", h.GetRds().GetRouteConfigName())
				}
				h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: proto.Clone(rc).(*routev3.RouteConfiguration)}
				a, err := anypb.New(h)
				if err != nil {
					t.Fatal(err)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
			}
		}
		listeners = append(listeners, l)
	}
	var clusters []*clusterv3.Cluster
	for _, c := range tr.Clusters {
		if c.GetName() != "kube_llm_vllm_8000" {
			continue // the harness's own test backend
		}
		c = proto.Clone(c).(*clusterv3.Cluster)
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		c.EdsClusterConfig = nil
		var eps []*endpointv3.LbEndpoint
		for _, m := range members {
			host, p, _ := net.SplitHostPort(m)
			n, _ := strconv.Atoi(p)
			eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
				Endpoint: &endpointv3.Endpoint{Address: socket(host, n)}}})
		}
		c.LoadAssignment = &endpointv3.ClusterLoadAssignment{ClusterName: c.GetName(),
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
		clusters = append(clusters, c)
	}
	if len(clusters) != 1 || len(listeners) != 1 {
		t.Fatalf("clusters %d listeners %d", len(clusters), len(listeners))
	}
	return &bootstrapv3.Bootstrap{
		Admin:           &bootstrapv3.Admin{Address: socket("127.0.0.1", admin)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Listeners: listeners, Clusters: clusters},
	}
}

type envoy struct {
	cmd       *exec.Cmd
	adminPort int
	log       string
}

func (e *envoy) logText() string {
	b, _ := os.ReadFile(e.log)
	return string(b)
}

// admin is an admin endpoint's text.
func (e *envoy) admin(path string) string {
	r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", e.adminPort, path))
	if err != nil {
		return err.Error()
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// stat sums the counters whose names end with suffix.
func (e *envoy) stat(suffix string) int {
	r, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=scrape", e.adminPort))
	if err != nil {
		return 0
	}
	defer r.Body.Close()
	total := 0
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ": ")
		if ok && strings.HasSuffix(name, suffix) {
			n, _ := strconv.Atoi(strings.TrimSpace(value))
			total += n
		}
	}
	return total
}

func runEnvoy(t *testing.T, b *bootstrapv3.Bootstrap) *envoy {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "envoy.json")
	writeBootstrap(t, b, path)
	bin := os.Getenv("ENVOY_BIN")
	env := append(os.Environ(), "ENVOY_DYNAMIC_MODULES_SEARCH_PATH="+os.Getenv("PICKER_NATIVE_DIR"))
	e := &envoy{adminPort: int(b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue()), log: filepath.Join(dir, "envoy.log")}
	// Two workers: in the Wasm build each has a VM, and one standby scraper is elected.
	e.cmd = exec.Command(bin, "-c", path, "--concurrency", "2", "--disable-hot-restart", "--log-level", "info", "--log-path", e.log)
	e.cmd.Env = env
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.cmd.Process.Kill(); _ = e.cmd.Wait() })
	return e
}

// wasmModule is the policy's module section for the built .wasm (PICKER_WASM).
func wasmModule(t *testing.T) string {
	t.Helper()
	wasm := os.Getenv("PICKER_WASM")
	if wasm == "" {
		t.Fatal("PICKER_WASM is not set")
	}
	return "    type: Wasm\n    wasm:\n      path: " + wasm
}

// writeBootstrap writes b as JSON to path and has Envoy validate it.
func writeBootstrap(t *testing.T, b *bootstrapv3.Bootstrap, path string) {
	t.Helper()
	text, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	validate := exec.Command(os.Getenv("ENVOY_BIN"), "--mode", "validate", "-c", path, "--log-level", "warn")
	validate.Env = append(os.Environ(), "ENVOY_DYNAMIC_MODULES_SEARCH_PATH="+os.Getenv("PICKER_NATIVE_DIR"))
	if out, err := validate.CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("envoy --mode validate: %v\n%s\n%s", err, out, text)
	}
}

// TestRenderBootstrapForBenchmarks is how scripts/bench-envoy.sh (BENCH_KGW=1) gets the
// configuration kgateway would push with the Wasm policy: KGATEWAY_BOOTSTRAP_OUT (file to write),
// KGATEWAY_PICKER_JSON (the picker JSON: its pool.endpoints become the Service's endpoints),
// KGATEWAY_LISTEN_PORT, KGATEWAY_ADMIN_PORT, PICKER_WASM, ENVOY_BIN. Skipped without them.
func TestRenderBootstrapForBenchmarks(t *testing.T) {
	out := os.Getenv("KGATEWAY_BOOTSTRAP_OUT")
	if out == "" {
		t.Skip("KGATEWAY_BOOTSTRAP_OUT is not set (scripts/bench-envoy.sh sets it)")
	}
	raw, err := os.ReadFile(os.Getenv("KGATEWAY_PICKER_JSON"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	pool, _ := cfg["pool"].(map[string]any)
	if pool == nil {
		t.Fatal("the picker JSON has no pool")
	}
	delete(pool, "cluster") // kgateway's cluster for the Service
	var members []string
	eps, _ := pool["endpoints"].([]any)
	for _, e := range eps {
		if m, ok := e.(map[string]any); ok {
			if a, ok := m["address"].(string); ok {
				members = append(members, a)
			}
		}
	}
	if len(members) == 0 {
		t.Fatal("the picker JSON lists no endpoints")
	}
	config, _ := json.Marshal(cfg)
	port, err1 := strconv.Atoi(os.Getenv("KGATEWAY_LISTEN_PORT"))
	admin, err2 := strconv.Atoi(os.Getenv("KGATEWAY_ADMIN_PORT"))
	if err1 != nil || err2 != nil {
		t.Fatal("KGATEWAY_LISTEN_PORT and KGATEWAY_ADMIN_PORT must be ports")
	}
	tr := translate(t, wasmModule(t), string(config))
	writeBootstrap(t, bootstrap(t, tr, port, admin, members), out)
}

func chat(t *testing.T, port int, path string, headers map[string]string) *http.Response {
	t.Helper()
	body := `{"model": "meta-llama/Llama-3.1-8B-Instruct", "messages": [{"role": "user", "content": "Which server is this?"}]}`
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	r, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Body.Close()
	return r
}

func TestKgatewayOutputRoutesThroughThePickerInEnvoy(t *testing.T) {
	if os.Getenv("ENVOY_BIN") == "" {
		t.Skip("ENVOY_BIN is not set: run `make kgateway-test`, which builds the modules and installs Envoy 1.40")
	}
	for _, build := range []string{"wasm", "native"} {
		t.Run(build, func(t *testing.T) {
			servers := []*modelServer{
				startModelServer(t, "pod-a", 9, 0.9),
				startModelServer(t, "pod-b", 0, 0.1),
				startModelServer(t, "pod-c", 9, 0.9),
			}
			addrs := make([]string, 0, len(servers))
			for _, s := range servers {
				addrs = append(addrs, s.addr)
			}
			// The native pool follows the cluster: no endpoints in its configuration.
			module, config := nativeModuleYAML, pickerConfig(nil)
			if build == "wasm" {
				module, config = wasmModule(t), pickerConfig(addrs)
			} else if os.Getenv("PICKER_NATIVE_DIR") == "" {
				t.Fatal("PICKER_NATIVE_DIR is not set")
			}
			tr := translate(t, module, config)
			port, admin := freePort(t), freePort(t)
			e := runEnvoy(t, bootstrap(t, tr, port, admin, addrs))
			deadline := time.Now().Add(30 * time.Second)
			for e.stat("scrape.success") < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("the picker never scraped the pool\n%s", e.logText())
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			for i := 0; i < 5; i++ {
				r := chat(t, port, "/v1/chat/completions", map[string]string{
					"x-endpoint-picker-debug": "1",
					// A client cannot steer the request: the picker replaces this header.
					"x-gateway-destination-endpoint": servers[0].addr,
				})
				if r.StatusCode != 200 || r.Header.Get("x-inference-pod") != "pod-b" {
					t.Fatalf("status %d, served by %q (debug %q), want pod-b, the least loaded\n%s",
						r.StatusCode, r.Header.Get("x-inference-pod"), r.Header.Get("x-endpoint-picker-debug"), e.logText())
				}
				if !strings.Contains(r.Header.Get("x-endpoint-picker-debug"), "picked=") {
					t.Fatalf("the picker decided: %q", r.Header.Get("x-endpoint-picker-debug"))
				}
			}
			// The route the policy does not target: the picker stays off.
			r := chat(t, port, "/plain/chat/completions", map[string]string{"x-endpoint-picker-debug": "1"})
			if r.StatusCode != 200 || r.Header.Get("x-endpoint-picker-debug") != "" {
				t.Fatalf("untargeted route: status %d, debug %q", r.StatusCode, r.Header.Get("x-endpoint-picker-debug"))
			}
		})
	}
}
