package envoytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway/v2/test/testutils"
	apiserverschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	translatortest "github.com/kgateway-dev/kgateway/v2/test/translator"

	"github.com/llm-picker/endpoint-picker/kgateway/api/v1alpha1"
)

// schemas: our CRD and kgateway v2.2.0's own (from the module, as its chart installs them).
func schemas(t *testing.T) map[schema.GroupVersionKind]*apiserverschema.Structural {
	t.Helper()
	ours, err := testutils.GetStructuralSchemas("../crd")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := kgatewayModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := testutils.GetStructuralSchemas(filepath.Join(dir, testutils.CRDPath))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range theirs {
		ours[k] = v
	}
	return ours
}

// load validates every document of a manifest file against its CRD's structural schema with
// the API server's own validation and defaulting code (kgateway's file loader).
func load(t *testing.T, path string) ([]client.Object, error) {
	t.Helper()
	scheme := translatortest.NewScheme(runtime.SchemeBuilder{v1alpha1.AddToScheme})
	return testutils.LoadFromFiles(path, scheme, schemas(t))
}

func TestDeployManifestsValidateAgainstTheirCRDs(t *testing.T) {
	objs, err := load(t, "../deploy/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.GetObjectKind().GroupVersionKind().Kind]++
		if p, ok := o.(*v1alpha1.EndpointPickerPolicy); ok && p.Spec.FailureMode == "" {
			t.Fatalf("%s: the CRD's default failureMode was not applied", p.Name)
		}
	}
	// Every document decoded (an unknown kind or a bad document is skipped with a warning).
	for kind, n := range map[string]int{"Namespace": 1, "GatewayParameters": 1, "Gateway": 1, "HTTPRoute": 1, "Service": 1, "EndpointPickerPolicy": 2} {
		if kinds[kind] != n {
			t.Fatalf("%s: %d documents, want %d (%v)", kind, kinds[kind], n, kinds)
		}
	}
}

func TestTheCRDRefusesBadPolicies(t *testing.T) {
	good, err := os.ReadFile("../deploy/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policy := string(good[strings.LastIndex(string(good), "\n---\n")+5:])
	for name, c := range map[string]struct{ from, to, want string }{
		"unknown module type":  {"type: Native", "type: Lua", "spec.module.type"},
		"unknown target kind":  {"kind: HTTPRoute", "kind: ConfigMap", "spec.targetRefs[0].kind"},
		"unknown failure mode": {"  config:", "  failureMode: Sometimes\n  config:", "spec.failureMode"},
		"bad library name":     {"name: endpoint_picker", "name: ../evil", "spec.module.native.name"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(policy, c.from, c.to, 1)
			if bad == policy {
				t.Fatalf("%q not in the policy", c.from)
			}
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := load(t, path); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
		})
	}
}

// celErrors runs the CRD's x-kubernetes-validations (CEL) rules over one policy document with
// the API server's own CEL validator.
func celErrors(t *testing.T, doc string) []string {
	t.Helper()
	gvk := v1alpha1.GroupVersion.WithKind(v1alpha1.Kind)
	s, ok := schemas(t)[gvk]
	if !ok {
		t.Fatal("no schema for the policy")
	}
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	v := cel.NewValidator(s, true, celconfig.PerCallLimit)
	errs, _ := v.Validate(t.Context(), field.NewPath(""), s, obj, nil, celconfig.RuntimeCELCostBudget)
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestTheCRDsRulesHold(t *testing.T) {
	text, err := os.ReadFile("../deploy/manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var policies []string
	for _, doc := range strings.Split(string(text), "\n---\n") {
		if strings.Contains(doc, "kind: EndpointPickerPolicy") {
			policies = append(policies, doc)
		}
	}
	if len(policies) != 2 {
		t.Fatalf("%d policies", len(policies))
	}
	for _, p := range policies {
		if errs := celErrors(t, p); len(errs) != 0 {
			t.Fatalf("a shipped policy breaks a rule: %v", errs)
		}
	}
	for name, c := range map[string]struct{ doc, from, to, want string }{
		"Wasm without a file":         {policies[0], "type: Wasm", "type: Native", "type Native needs native"},
		"Service in the wrong group":  {policies[0], "- group: \"\"\n    kind: Service", "- group: gateway.networking.k8s.io\n    kind: Service", "Service in the core group"},
		"HTTPRoute in the core group": {policies[1], "- group: gateway.networking.k8s.io\n    kind: HTTPRoute", "- group: \"\"\n    kind: HTTPRoute", "Service in the core group"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(c.doc, c.from, c.to, 1)
			if bad == c.doc {
				t.Fatalf("%q not found", c.from)
			}
			errs := celErrors(t, bad)
			if len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), c.want) {
				t.Fatalf("errors %v, want one saying %q", errs, c.want)
			}
		})
	}
}
