// Command world-loadgen holds TCP connections to the sandboxes of the pods behind a label
// selector, following a schedule of totals ("0s=60,2m=0": 60 connections from the start, none
// after two minutes), spread evenly over the Ready pods and rebalanced as pods come and go.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/openstack-autoscaler/openstack-autoscaler/e2e/loadgen"
)

type phase struct {
	at    time.Duration
	total int
}

func parseSchedule(s string) ([]phase, error) {
	var phases []phase
	for _, part := range strings.Split(s, ",") {
		at, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		d, err1 := time.ParseDuration(at)
		total, err2 := strconv.Atoi(n)
		if !ok || err1 != nil || err2 != nil || total < 0 {
			return nil, fmt.Errorf("--schedule %q: %q is not OFFSET=TOTAL (like 0s=60 or 2m=0)", s, part)
		}
		phases = append(phases, phase{d, total})
	}
	sort.Slice(phases, func(i, j int) bool { return phases[i].at < phases[j].at })
	return phases, nil
}

func main() {
	klog.InitFlags(nil)
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the world's cluster")
	namespace := flag.String("namespace", "default", "namespace of the pods")
	selector := flag.String("selector", "", "label selector of the pods, like app=web")
	port := flag.Int("port", 8080, "port to connect to on each pod")
	schedule := flag.String("schedule", "0s=10", "OFFSET=TOTAL,...: total connections held from each offset on")
	source := flag.String("source", "198.51.100.10", "local address connections come from")
	flag.Parse()
	phases, err := parseSchedule(*schedule)
	if err != nil {
		klog.ErrorS(err, "bad flag")
		os.Exit(2)
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.ErrorS(err, "--kubeconfig")
		os.Exit(2)
	}
	kube := kubernetes.NewForConfigOrDie(restConfig)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	holder := &loadgen.Holder{Source: *source}
	defer holder.CloseAll()
	start := time.Now()
	for {
		total := 0
		for _, p := range phases {
			if time.Since(start) >= p.at {
				total = p.total
			}
		}
		pods, err := kube.CoreV1().Pods(*namespace).List(ctx, metav1.ListOptions{LabelSelector: *selector})
		if err == nil {
			var targets []string
			for _, p := range pods.Items {
				if p.Status.PodIP != "" && p.DeletionTimestamp == nil && ready(&p) {
					targets = append(targets, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(*port)))
				}
			}
			if len(targets) > 0 {
				if err := holder.Spread(ctx, targets, total); err != nil {
					klog.V(2).InfoS("spreading connections", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
