// Command etcd is etcd's server, for the controller's end-to-end test (envtest); etcd's own
// command module cannot be `go install`ed for the same reason as kube-apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
