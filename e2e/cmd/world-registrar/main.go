// Command world-registrar is the local world's stand-in for cloud-init + kubelet + the OpenStack
// cloud controller manager: it turns the cluster's ACTIVE Nova servers into kwok Nodes (see
// package registrar).
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

	"github.com/openstack-autoscaler/openstack-autoscaler/cloudprovider/openstack"
	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/registrar"
)

func main() {
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the world's cluster")
	cloudsFile := flag.String("clouds-file", "", "clouds.yaml")
	cloud := flag.String("cloud", "world-admin", "cloud in clouds.yaml; admin, to see servers of every project")
	groups := flag.String("groups", "", "node group declarations (or the provider's config file): clusterName, nodeGroups[].labels/taints/reserved; re-read on every pass")
	interval := flag.Duration("interval", time.Second, "how often servers are listed")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.ErrorS(err, "--kubeconfig")
		os.Exit(2)
	}
	decl, err := registrar.LoadDeclarations(*groups)
	if err != nil {
		klog.ErrorS(err, "--groups")
		os.Exit(2)
	}
	clients, err := openstack.Connect(ctx, openstack.CloudRef{CloudsFile: *cloudsFile, Cloud: *cloud}, nil)
	if err != nil {
		klog.ErrorS(err, "connecting to OpenStack")
		os.Exit(1)
	}
	r := &registrar.Registrar{
		Compute: clients.Compute, Kube: kubernetes.NewForConfigOrDie(restConfig), Decl: decl,
		Region: clients.Region, Interval: *interval, DeclarationsFile: *groups,
	}
	klog.InfoS("registrar running", "cluster", decl.ClusterName, "groups", len(decl.NodeGroups))
	if err := r.Run(ctx); err != nil {
		klog.ErrorS(err, "registrar stopped")
		os.Exit(1)
	}
}
