package main

import (
	"flag"
	"runtime/debug"
)

// flagSet sets one klog flag when a value is given (KUBELET_PEER_V=4 for verbose logs).
func flagSet(name, value string) error {
	if value == "" {
		return nil
	}
	return flag.Set(name, value)
}

// kubernetesVersion is the k8s.io/kubernetes module version this binary was built from.
func kubernetesVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "k8s.io/kubernetes" {
			return dep.Version
		}
	}
	return "unknown"
}
