package main

import (
	"fmt"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"
)

// cdiResolve is what a container runtime does with the CDI device ids the kubelet passes,
// up to the host: the CDI library's cache loads and validates every spec in the directory
// and resolves each id; the answer is the container edits of each id's spec (once per
// spec) and device, in CDI's order. Injecting them into an OCI spec would stat each
// device node's host path, which exists on a real node but not for a FakeHost.
func cdiResolve(specDir string, ids []string) (any, error) {
	cache, err := cdi.NewCache(cdi.WithSpecDirs(specDir), cdi.WithAutoRefresh(false))
	if err != nil {
		return nil, fmt.Errorf("CDI cache on %s: %w", specDir, err)
	}
	if errs := cache.GetErrors(); len(errs) != 0 {
		return nil, fmt.Errorf("CDI specs in %s: %v", specDir, errs)
	}
	env := []string{}
	nodes := []map[string]any{}
	mounts := []map[string]any{}
	add := func(e cdispec.ContainerEdits) {
		env = append(env, e.Env...)
		for _, n := range e.DeviceNodes {
			nodes = append(nodes, map[string]any{"path": n.Path, "hostPath": n.HostPath, "type": n.Type})
		}
		for _, m := range e.Mounts {
			mounts = append(mounts, map[string]any{"hostPath": m.HostPath, "containerPath": m.ContainerPath})
		}
	}
	seen := map[*cdi.Spec]bool{}
	for _, id := range ids {
		device := cache.GetDevice(id)
		if device == nil {
			return nil, fmt.Errorf("unresolvable CDI device %q", id)
		}
		if spec := device.GetSpec(); !seen[spec] {
			seen[spec] = true
			add(spec.ContainerEdits)
		}
		add(device.ContainerEdits)
	}
	return map[string]any{"env": env, "device_nodes": nodes, "mounts": mounts}, nil
}
