// Command world-sandboxes gives kwok pods annotated with e2e.openstack-autoscaler.io/sandbox-ports
// a real network namespace with listening processes in kubelet-style cgroups (see package
// sandbox). Run as root. On exit it removes every sandbox it made.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/sandbox"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sandbox-process" {
		if err := sandbox.Process(os.Args[2:]); err != nil {
			klog.ErrorS(err, "sandbox process")
			os.Exit(1)
		}
		return
	}
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the world's cluster")
	hostIP := flag.String("host-ip", "198.51.100.10", "host address (on lo) the pods' traffic comes from")
	layout := flag.String("cgroup-layout", string(sandbox.SystemdV2), "pod cgroup layout: systemd-v2 or cgroupfs-v1")
	interval := flag.Duration("interval", 500*time.Millisecond, "how often pods are compared with sandboxes")
	flag.Parse()

	self, err := os.Executable()
	if err != nil {
		klog.ErrorS(err, "finding own executable")
		os.Exit(1)
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.ErrorS(err, "--kubeconfig")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c := &sandbox.Controller{
		Kube:     kubernetes.NewForConfigOrDie(restConfig),
		Manager:  &sandbox.Manager{Binary: self, HostIP: *hostIP, Layout: sandbox.Layout(*layout)},
		Interval: *interval,
	}
	if err := c.Run(ctx); err != nil {
		klog.ErrorS(err, "sandboxes stopped")
		os.Exit(1)
	}
}
