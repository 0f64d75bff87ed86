package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of EndpointPickerPolicy.
const Group = "picker.llm-picker.io"

// Kind is the policy's kind.
const Kind = "EndpointPickerPolicy"

// GroupVersion is group/version of this package's types.
var GroupVersion = schema.GroupVersion{Group: Group, Version: "v1alpha1"}

// GroupKind of EndpointPickerPolicy (how kgateway keys contributed policies).
var GroupKind = schema.GroupKind{Group: Group, Kind: Kind}

// Resource is the policy's GroupVersionResource (the informer watches it).
var Resource = GroupVersion.WithResource("endpointpickerpolicies")

// AddToScheme registers the types with a runtime scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &EndpointPickerPolicy{}, &EndpointPickerPolicyList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
