package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// EndpointPickerPolicy attaches the endpoint picker to kgateway's own listeners: an HTTP filter
// enabled on the routes it targets (HTTPRoute, or every route of a Gateway) and, on the
// Services it targets, a cluster that sends each request to the endpoint the picker wrote in
// x-gateway-destination-endpoint. No loopback listener, no bootstrap change: the filter scrapes
// the pool itself (filter-only mode).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=kgateway,shortName=epp
// +kubebuilder:printcolumn:name="Module",type=string,JSONPath=".spec.module.type"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type EndpointPickerPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec EndpointPickerPolicySpec `json:"spec"`
	// Status is not written by this controller build yet.
	// +optional
	Status gwv1.PolicyStatus `json:"status,omitempty"`
}

// EndpointPickerPolicyList is a list of EndpointPickerPolicy.
//
// +kubebuilder:object:root=true
type EndpointPickerPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EndpointPickerPolicy `json:"items"`
}

// EndpointPickerPolicySpec says where the picker runs, which module runs it and with what
// configuration.
type EndpointPickerPolicySpec struct {
	// TargetRefs: the HTTPRoutes (or Gateways: all their routes) whose requests the picker
	// schedules, and the Services (the pool's model servers) whose clusters honour its choice.
	// Target the route and the Service it sends to: without the Service the choice is ignored.
	//
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	TargetRefs []PolicyTargetReference `json:"targetRefs"`

	// Module is the picker build the proxy loads.
	Module Module `json:"module"`

	// Config is the picker configuration, exactly as the module reads it: GIE's
	// EndpointPickerConfig fields (plugins, schedulingProfiles, featureGates, ...) plus the
	// `pool` section. `pool.cluster` is filled in with the targeted route's backend cluster
	// when left out. The Wasm build needs `pool.endpoints`; the native build follows the
	// Service's endpoints (EDS) when it has none.
	//
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Config apiextensionsv1.JSON `json:"config"`

	// FailureMode of the Wasm build when its VM fails: FailClosed (default) answers 503 and
	// replaces the VM; FailOpen lets requests through unpicked (the cluster's fallback balancer
	// chooses). The native build has no VM to fail and ignores it.
	//
	// +kubebuilder:validation:Enum=FailClosed;FailOpen
	// +kubebuilder:default=FailClosed
	// +optional
	FailureMode FailureMode `json:"failureMode,omitempty"`
}

// PolicyTargetReference names a Gateway, HTTPRoute or Service in the policy's namespace.
//
// +kubebuilder:validation:XValidation:rule="self.kind == 'Service' ? size(self.group) == 0 : self.group == 'gateway.networking.k8s.io'",message="Gateway and HTTPRoute are in gateway.networking.k8s.io, Service in the core group"
type PolicyTargetReference struct {
	// Group of the target: gateway.networking.k8s.io, or "" for a Service.
	Group gwv1.Group `json:"group"`
	// Kind of the target.
	//
	// +kubebuilder:validation:Enum=Gateway;HTTPRoute;Service
	Kind gwv1.Kind `json:"kind"`
	// Name of the target.
	Name gwv1.ObjectName `json:"name"`
}

// ModuleType is the picker build.
type ModuleType string

const (
	// ModuleWasm is the proxy-wasm module (one VM per Envoy worker).
	ModuleWasm ModuleType = "Wasm"
	// ModuleNative is the native Envoy dynamic module (one state per Envoy process).
	ModuleNative ModuleType = "Native"
)

// Module is the picker build and where the proxy finds it.
//
// +kubebuilder:validation:XValidation:rule="self.type == 'Wasm' ? has(self.wasm) : has(self.native)",message="type Wasm needs wasm, type Native needs native"
type Module struct {
	// Type of the module.
	//
	// +kubebuilder:validation:Enum=Wasm;Native
	Type ModuleType `json:"type"`
	// Wasm: the module file in the proxy pod.
	// +optional
	Wasm *WasmModule `json:"wasm,omitempty"`
	// Native: the library's name in the proxy pod.
	// +optional
	Native *NativeModule `json:"native,omitempty"`
}

// WasmModule locates the .wasm file.
type WasmModule struct {
	// Path of the module file inside the proxy container, e.g. an image volume mounted through
	// GatewayParameters: /opt/llm-picker/plugin.wasm.
	//
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path"`
}

// NativeModule names the shared library.
type NativeModule struct {
	// Name: Envoy loads lib<name>.so from $ENVOY_DYNAMIC_MODULES_SEARCH_PATH (set it in
	// GatewayParameters).
	//
	// +kubebuilder:default=endpoint_picker
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	// +optional
	Name string `json:"name,omitempty"`
}

// FailureMode is what happens to requests when the Wasm picker's VM fails.
type FailureMode string

const (
	// FailClosed answers 503 while the VM is replaced.
	FailClosed FailureMode = "FailClosed"
	// FailOpen passes requests on unpicked.
	FailOpen FailureMode = "FailOpen"
)
