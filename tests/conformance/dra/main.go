// Command drapeer runs a small Kubernetes control plane and node for DRA, from
// Kubernetes' own Go modules (the versions pinned in go.mod), in one process driven by
// JSON lines on stdin; every answer is one JSON line on stdout.
//
//   - etcd: go.etcd.io/etcd/server/v3/embed on loopback ports in the work dir;
//   - kube-apiserver: k8s.io/kubernetes/cmd/kube-apiserver/app (options, Complete,
//     Validate, Run, as the kube-apiserver command does) on 127.0.0.1 with a static
//     token for the test's client (a kubeconfig is written into the work dir);
//   - the scheduler's structured allocator (k8s.io/dynamic-resource-allocation/structured)
//     with the feature set the scheduler derives from the feature gates;
//   - the kubelet's DRA manager (pkg/kubelet/cm/dra) with its registration handler fed by
//     the kubelet's plugin watcher (pkg/kubelet/pluginmanager).
//
// Nothing here decides anything those components decide: each operation calls the real
// package and reports what it returned. The glue is what the scheduler's and kubelet's
// own types do between these packages (listing objects, persisting the allocation and
// reservation into the claim status) and a pod store standing in for the kubelet's pods.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"k8s.io/klog/v2"
)

// request is one command line from the driver.
type request struct {
	ID int    `json:"id"`
	Op string `json:"op"`
	// start: the control plane's work dir
	Dir string `json:"dir"`
	// kubelet_start: the node, its plugins registry and the DRA manager's state dir
	NodeName        string `json:"node_name"`
	PluginsRegistry string `json:"plugins_registry"`
	StateDir        string `json:"state_dir"`
	// allocate / prepare / unprepare
	Namespace string   `json:"namespace"`
	Claims    []string `json:"claims"`
	Pod       *podSpec `json:"pod"`
	// cdi_resolve: the CDI spec directory and the device ids
	SpecDir    string   `json:"spec_dir"`
	CDIDevices []string `json:"cdi_devices"`
}

type podSpec struct {
	UID        string          `json:"uid"`
	Name       string          `json:"name"`
	Namespace  string          `json:"namespace"`
	Claims     []podClaim      `json:"claims"`
	Containers []containerSpec `json:"containers"`
}

type podClaim struct {
	Name      string `json:"name"`
	ClaimName string `json:"claim_name"`
}

type containerSpec struct {
	Name   string   `json:"name"`
	Claims []string `json:"claims"`
}

func main() {
	klog.InitFlags(nil)
	_ = flagSet("logtostderr", "true")
	_ = flagSet("v", os.Getenv("DRA_PEER_V"))
	flag.Parse() // klog flags, e.g. -v=4

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &peer{pods: map[string]*podEntry{}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var r request
		answer := map[string]any{}
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			answer["error"] = fmt.Sprintf("bad request: %v", err)
		} else {
			answer["id"] = r.ID
			result, err := p.handle(ctx, r)
			if err != nil {
				answer["error"] = err.Error()
			} else {
				answer["result"] = result
			}
		}
		if err := out.Encode(answer); err != nil {
			klog.Fatalf("stdout: %v", err)
		}
		if r.Op == "stop" {
			return
		}
	}
	p.stop()
}
