// Command endpoint-picker-kgateway is kgateway's controller with the EndpointPickerPolicy
// plugin compiled in: run it in place of the stock kgateway controller image.
package main

import (
	"context"
	"os"

	"github.com/kgateway-dev/kgateway/v2/pkg/kgateway/setup"

	"github.com/llm-picker/endpoint-picker/kgateway/plugin"
)

func main() {
	s, err := setup.New(setup.WithExtraPlugins(plugin.Factory))
	if err != nil {
		os.Stderr.WriteString("endpoint-picker-kgateway: " + err.Error() + "\n")
		os.Exit(1)
	}
	if err := s.Start(context.Background()); err != nil {
		os.Stderr.WriteString("endpoint-picker-kgateway: " + err.Error() + "\n")
		os.Exit(1)
	}
}
