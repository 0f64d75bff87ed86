// Package v1alpha1 holds EndpointPickerPolicy, the policy that attaches the endpoint picker
// (the proxy-wasm module or the native Envoy dynamic module) to kgateway's own listeners.
//
// +kubebuilder:object:generate=true
// +groupName=picker.llm-picker.io
package v1alpha1
