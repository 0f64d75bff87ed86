// Command kube-apiserver is Kubernetes' API server, built from the Go module proxy for the
// controller's end-to-end test (envtest): k8s.io/kubernetes cannot be `go install`ed (its go.mod
// replaces the staging modules with local paths), so this module requires it and points those
// replaces at the published staging modules of the same release.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
