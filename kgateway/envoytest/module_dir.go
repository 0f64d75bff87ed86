package envoytest

import (
	"os/exec"
	"strings"
)

// kgatewayModuleDir is where the go command keeps kgateway's module (its CRDs are in it).
func kgatewayModuleDir() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kgateway-dev/kgateway/v2").Output()
	return strings.TrimSpace(string(out)), err
}
