// Command world-pause is the real node's sandbox ("pause") process: it holds a pod's namespaces
// and does nothing until it is told to stop. The world packs it as registry.k8s.io/pause (no
// registry can be reached here), the image containerd's CRI names for every pod sandbox.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
