// Command kubeletpeer runs the kubelet's own device manager, plugin watcher and pod
// resources server (from k8s.io/kubernetes, the version pinned in go.mod) in one
// process, driven by JSON lines on stdin; every answer is one JSON line on stdout.
//
// Nothing here decides anything a kubelet decides: each operation calls the real
// package and reports what it returned. The glue is what the kubelet's own
// containerManager and Kubelet types do between these packages (wiring, format
// conversion for the pod resources API), and a pod store standing in for the API
// server's pod list.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	_ "unsafe" // go:linkname

	cadvisorapi "github.com/google/cadvisor/lib/model"
	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	pluginwatcherapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
	"k8s.io/kubernetes/pkg/kubelet/apis/podresources"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

// newManagerImpl is the device manager's own constructor with the registration socket
// path as a parameter (the exported NewManagerImpl hard-codes
// /var/lib/kubelet/device-plugins/kubelet.sock; the kubelet's own tests use this one).
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(logger klog.Logger, socketPath string, topology []cadvisorapi.Node,
	topologyAffinityStore topologymanager.Store) (*devicemanager.ManagerImpl, error)

// request is one command line from the driver.
type request struct {
	ID int    `json:"id"`
	Op string `json:"op"`
	// start
	DevicePluginDir string `json:"device_plugin_dir"`
	PluginsRegistry string `json:"plugins_registry"`
	PodResources    string `json:"pod_resources"`
	NUMANodes       []int  `json:"numa_nodes"`
	// PodsLate: the manager's sources are not ready (UpdateAllocatedDevices frees nothing)
	// until add_pods, as in a kubelet whose API server pods have not arrived yet
	PodsLate bool `json:"pods_late"`
	// DevicesLateMs: serve pod resources this long before the device manager starts (reads
	// its checkpoint, recreates kubelet.sock), as a real kubelet does: its pod resources
	// server starts with Run, the device manager only once the container runtime is up
	DevicesLateMs int `json:"devices_late_ms"`
	// pods
	Pod       *podSpec `json:"pod"`
	UID       string   `json:"uid"`
	Container string   `json:"container"`
	// add_pods
	Pods []*podSpec `json:"pods"`
	// wait_allocatable
	Want      map[string]int `json:"want"`
	TimeoutMs int            `json:"timeout_ms"`
	// deregister
	Resource string `json:"resource"`
	Endpoint string `json:"endpoint"`
}

type podSpec struct {
	UID        string          `json:"uid"`
	Name       string          `json:"name"`
	Namespace  string          `json:"namespace"`
	Containers []containerSpec `json:"containers"`
	// InitContainers are plain (not restartable) init containers, admitted first
	InitContainers []containerSpec `json:"init_containers"`
}

type containerSpec struct {
	Name      string         `json:"name"`
	Resources map[string]int `json:"resources"`
}

// peer holds one "kubelet": the managers of the current generation and the pod store
// that outlives kubelet restarts (it stands for the API server).
type peer struct {
	mu      sync.Mutex
	pods    map[string]*v1.Pod // by UID, in admission order below
	order   []string
	started *generation
	params  request
	synced  atomic.Bool // the pods from the API server have arrived (sources ready)
}

type generation struct {
	manager    *devicemanager.ManagerImpl
	topology   topologymanager.Manager
	cancel     context.CancelFunc
	stopCh     chan struct{}
	podRes     *grpc.Server
	pluginsDir string
}

func (p *peer) activePods() []*v1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*v1.Pod, 0, len(p.order))
	for _, uid := range p.order {
		out = append(out, p.pods[uid])
	}
	return out
}

// Pod resources providers (what the kubelet's Kubelet and containerManager supply).
func (p *peer) GetActivePods() []*v1.Pod { return p.activePods() }
func (p *peer) GetPods() []*v1.Pod       { return p.activePods() }
func (p *peer) GetPodByName(namespace, name string) (*v1.Pod, bool) {
	for _, pod := range p.activePods() {
		if pod.Namespace == namespace && pod.Name == name {
			return pod, true
		}
	}
	return nil, false
}

type devicesProvider struct{ m *devicemanager.ManagerImpl }

func (d devicesProvider) UpdateAllocatedDevices(logger klog.Logger) {
	d.m.UpdateAllocatedDevices(logger)
}
func (d devicesProvider) GetDevices(podUID, containerName string) []*podresourcesapi.ContainerDevices {
	return containerDevices(d.m.GetDevices(podUID, containerName))
}
func (d devicesProvider) GetAllocatableDevices(logger klog.Logger) []*podresourcesapi.ContainerDevices {
	return containerDevices(d.m.GetAllocatableDevices(logger))
}

// containerDevices is the containerManager's format conversion from the device
// manager's instances to the pod resources API (one entry per device and NUMA node).
func containerDevices(devs devicemanager.ResourceDeviceInstances) []*podresourcesapi.ContainerDevices {
	var out []*podresourcesapi.ContainerDevices
	for resourceName, resourceDevs := range devs {
		for id, dev := range resourceDevs {
			topo := dev.GetTopology()
			if topo == nil {
				out = append(out, &podresourcesapi.ContainerDevices{ResourceName: resourceName, DeviceIds: []string{id}})
				continue
			}
			for _, node := range topo.GetNodes() {
				out = append(out, &podresourcesapi.ContainerDevices{
					ResourceName: resourceName, DeviceIds: []string{id},
					Topology: &podresourcesapi.TopologyInfo{Nodes: []*podresourcesapi.NUMANode{{ID: node.GetID()}}},
				})
			}
		}
	}
	return out
}

// The CPU, memory and DRA managers are not wired: they report nothing.
type noOther struct{}

func (noOther) GetCPUs(*v1.Pod, *v1.Container) []int64 { return nil }
func (noOther) GetPodCPUs(string) []int64              { return nil }
func (noOther) GetAllocatableCPUs() []int64            { return nil }
func (noOther) GetMemory(klog.Logger, *v1.Pod, *v1.Container) []*podresourcesapi.ContainerMemory {
	return nil
}
func (noOther) GetPodMemory(klog.Logger, string) []*podresourcesapi.ContainerMemory { return nil }
func (noOther) GetAllocatableMemory(klog.Logger) []*podresourcesapi.ContainerMemory { return nil }
func (noOther) GetDynamicResources(klog.Logger, *v1.Pod, *v1.Container) []*podresourcesapi.DynamicResource {
	return nil
}

func (p *peer) start(ctx context.Context, r request) error {
	if p.started != nil {
		return fmt.Errorf("already started")
	}
	logger := klog.FromContext(ctx)
	var topo []cadvisorapi.Node
	for _, id := range r.NUMANodes {
		topo = append(topo, cadvisorapi.Node{Id: id})
	}
	tm, err := topologymanager.NewManager(logger, topo, "none", "container", nil)
	if err != nil {
		return err
	}
	m, err := newManagerImpl(logger, filepath.Join(r.DevicePluginDir, "kubelet.sock"), topo, tm)
	if err != nil {
		return err
	}
	ready := config.NewSourcesReady(func(sets.Set[string]) bool { return true })
	p.synced.Store(!r.PodsLate)
	podsReady := config.NewSourcesReady(func(sets.Set[string]) bool { return p.synced.Load() })
	startDevices := func() error {
		return m.Start(logger, p.activePods, podsReady, containermap.NewContainerMap(), sets.New[string]())
	}
	if r.DevicesLateMs <= 0 {
		if err := startDevices(); err != nil {
			return err
		}
	}
	tm.AddHintProvider(logger, m)
	g := &generation{manager: m, topology: tm, stopCh: make(chan struct{})}
	gctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	if r.PluginsRegistry != "" {
		pm := pluginmanager.NewPluginManager(r.PluginsRegistry, &record.FakeRecorder{})
		pm.AddHandler(pluginwatcherapi.DevicePlugin, m.GetWatcherHandler())
		go pm.Run(gctx, ready, g.stopCh)
	}
	if r.PodResources != "" {
		_ = os.Remove(r.PodResources)
		ln, err := net.Listen("unix", r.PodResources)
		if err != nil {
			return err
		}
		g.podRes = grpc.NewServer()
		podresourcesapi.RegisterPodResourcesListerServer(g.podRes, podresources.NewV1PodResourcesServer(gctx,
			podresources.PodResourcesProviders{
				Pods: p, Devices: devicesProvider{m}, Cpus: noOther{}, Memory: noOther{}, DynamicResources: noOther{},
			}))
		go func() { _ = g.podRes.Serve(ln) }()
	}
	if r.DevicesLateMs > 0 {
		time.Sleep(time.Duration(r.DevicesLateMs) * time.Millisecond)
		if err := startDevices(); err != nil {
			return err
		}
	}
	p.started = g
	p.params = r
	return nil
}

func (p *peer) stop(ctx context.Context) error {
	g := p.started
	if g == nil {
		return nil
	}
	p.started = nil
	close(g.stopCh)
	g.cancel()
	if g.podRes != nil {
		g.podRes.Stop()
	}
	return g.manager.Stop(klog.FromContext(ctx))
}

func (p *peer) pod(uid string) (*v1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[uid]
	if !ok {
		return nil, fmt.Errorf("no pod %q", uid)
	}
	return pod, nil
}

func container(pod *v1.Pod, name string) (*v1.Container, error) {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], nil
		}
	}
	return nil, fmt.Errorf("pod %q has no container %q", pod.UID, name)
}

func toPod(s *podSpec) *v1.Pod {
	pod := &v1.Pod{}
	pod.UID = types.UID(s.UID)
	pod.Name = s.Name
	pod.Namespace = s.Namespace
	if pod.Name == "" {
		pod.Name = s.UID
	}
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	toContainer := func(c containerSpec) v1.Container {
		rl := v1.ResourceList{}
		for name, n := range c.Resources {
			rl[v1.ResourceName(name)] = *resource.NewQuantity(int64(n), resource.DecimalSI)
		}
		return v1.Container{Name: c.Name, Resources: v1.ResourceRequirements{Limits: rl, Requests: rl}}
	}
	for _, c := range s.InitContainers {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, toContainer(c))
	}
	for _, c := range s.Containers {
		pod.Spec.Containers = append(pod.Spec.Containers, toContainer(c))
	}
	pod.Status.Phase = v1.PodRunning
	return pod
}

func devicesOut(devs devicemanager.ResourceDeviceInstances) map[string][]string {
	out := map[string][]string{}
	for res, ids := range devs {
		list := make([]string, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		sort.Strings(list)
		out[res] = list
	}
	return out
}

func quantities(l v1.ResourceList) map[string]int64 {
	out := map[string]int64{}
	for k, v := range l {
		out[string(k)] = v.Value()
	}
	return out
}

func (p *peer) handle(ctx context.Context, r request) (map[string]any, error) {
	logger := klog.FromContext(ctx)
	needStarted := map[string]bool{"capacity": true, "admit": true, "run_options": true, "remove": true,
		"devices": true, "hints": true, "allocatable_devices": true, "wait_allocatable": true,
		"deregister": true}
	if needStarted[r.Op] && p.started == nil {
		return nil, fmt.Errorf("kubelet not started")
	}
	switch r.Op {
	case "start":
		return map[string]any{}, p.start(ctx, r)
	case "stop":
		return map[string]any{}, p.stop(ctx)
	case "add_pods":
		// The API server's pod list reaching a (re)started kubelet: pods, no admission.
		for _, spec := range r.Pods {
			pod := toPod(spec)
			p.mu.Lock()
			if _, ok := p.pods[string(pod.UID)]; !ok {
				p.order = append(p.order, string(pod.UID))
			}
			p.pods[string(pod.UID)] = pod
			p.mu.Unlock()
		}
		// pods_late here: more of the batch is still to come (HandlePodAdditions adds pods
		// one at a time; the source counts as seen only after the whole batch)
		if !r.PodsLate {
			p.synced.Store(true)
		}
		return map[string]any{}, nil
	case "capacity":
		capacity, allocatable, inactive := p.started.manager.GetCapacity(logger)
		sort.Strings(inactive)
		return map[string]any{"capacity": quantities(capacity), "allocatable": quantities(allocatable),
			"inactive": inactive}, nil
	case "wait_allocatable":
		// Polls GetCapacity (one node-status sync) until every named resource has
		// the wanted allocatable count; reports how long it took.
		begin := time.Now()
		deadline := begin.Add(time.Duration(r.TimeoutMs) * time.Millisecond)
		for {
			_, allocatable, _ := p.started.manager.GetCapacity(logger)
			got := quantities(allocatable)
			done := true
			for name, n := range r.Want {
				if got[name] != int64(n) {
					done = false
				}
			}
			if done || time.Now().After(deadline) {
				return map[string]any{"reached": done, "elapsed_ms": float64(time.Since(begin).Microseconds()) / 1000,
					"allocatable": got}, nil
			}
			time.Sleep(500 * time.Microsecond)
		}
	case "allocatable_devices":
		out := map[string]any{}
		for res, devs := range p.started.manager.GetAllocatableDevices(logger) {
			list := []map[string]any{}
			for id, d := range devs {
				var nodes []int64
				for _, n := range d.GetTopology().GetNodes() {
					nodes = append(nodes, n.GetID())
				}
				list = append(list, map[string]any{"id": id, "health": d.Health, "numa": nodes})
			}
			sort.Slice(list, func(i, j int) bool { return list[i]["id"].(string) < list[j]["id"].(string) })
			out[res] = list
		}
		return map[string]any{"devices": out}, nil
	case "admit":
		pod := toPod(r.Pod)
		p.mu.Lock()
		if _, ok := p.pods[string(pod.UID)]; !ok {
			p.order = append(p.order, string(pod.UID))
		}
		p.pods[string(pod.UID)] = pod
		p.mu.Unlock()
		containers := map[string]any{}
		all := make([]*v1.Container, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
		for i := range pod.Spec.InitContainers { // the kubelet admits init containers first
			all = append(all, &pod.Spec.InitContainers[i])
		}
		for i := range pod.Spec.Containers {
			all = append(all, &pod.Spec.Containers[i])
		}
		for _, c := range all {
			begin := time.Now()
			if err := p.started.manager.Allocate(ctx, pod, c, lifecycle.AddOperation); err != nil {
				p.forget(string(pod.UID)) // a rejected pod is not active
				return nil, err
			}
			containers[c.Name] = map[string]any{
				"devices":     devicesOut(p.started.manager.GetDevices(string(pod.UID), c.Name)),
				"allocate_ms": float64(time.Since(begin).Microseconds()) / 1000,
			}
		}
		return map[string]any{"containers": containers}, nil
	case "devices":
		return map[string]any{"devices": devicesOut(p.started.manager.GetDevices(r.UID, r.Container))}, nil
	case "run_options":
		pod, err := p.pod(r.UID)
		if err != nil {
			return nil, err
		}
		c, err := container(pod, r.Container)
		if err != nil {
			return nil, err
		}
		opts, err := p.started.manager.GetDeviceRunContainerOptions(ctx, pod, c)
		if err != nil {
			return nil, err
		}
		return runOptions(opts), nil
	case "hints":
		pod := toPod(r.Pod)
		out := map[string]any{}
		for i := range pod.Spec.Containers {
			c := &pod.Spec.Containers[i]
			hints := p.started.manager.GetTopologyHints(logger, pod, c, lifecycle.AddOperation)
			perRes := map[string]any{}
			for res, list := range hints {
				if list == nil {
					perRes[res] = nil
					continue
				}
				items := []map[string]any{}
				for _, h := range list {
					var nodes []int
					if h.NUMANodeAffinity != nil {
						nodes = h.NUMANodeAffinity.GetBits()
					}
					items = append(items, map[string]any{"numa": nodes, "preferred": h.Preferred})
				}
				perRes[res] = items
			}
			out[c.Name] = perRes
		}
		return map[string]any{"hints": out}, nil
	case "deregister":
		// The device plugin handler's DeRegisterPlugin, as the plugin watcher calls it: the
		// plugin's client is disconnected (its ListAndWatch stream ends) while the kubelet runs
		// on, and the watcher still counts the unchanged socket as registered.
		p.started.manager.GetWatcherHandler().DeRegisterPlugin(ctx, r.Resource, r.Endpoint)
		return map[string]any{}, nil
	case "remove":
		p.forget(r.UID)
		p.started.manager.UpdateAllocatedDevices(logger)
		return map[string]any{}, nil
	}
	return nil, fmt.Errorf("unknown op %q", r.Op)
}

func (p *peer) forget(uid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.pods, uid)
	for i, u := range p.order {
		if u == uid {
			p.order = append(p.order[:i], p.order[i+1:]...)
			break
		}
	}
}

func runOptions(o *devicemanager.DeviceRunContainerOptions) map[string]any {
	out := map[string]any{"envs": map[string]string{}, "devices": []any{}, "mounts": []any{},
		"annotations": map[string]string{}, "cdi_devices": []string{}}
	if o == nil {
		return out
	}
	envs := map[string]string{}
	for _, e := range o.Envs {
		envs[e.Name] = e.Value
	}
	devs := []any{}
	for _, d := range o.Devices {
		devs = append(devs, map[string]any{"host_path": d.PathOnHost, "container_path": d.PathInContainer,
			"permissions": d.Permissions})
	}
	mounts := []any{}
	for _, m := range o.Mounts {
		mounts = append(mounts, map[string]any{"host_path": m.HostPath, "container_path": m.ContainerPath,
			"read_only": m.ReadOnly})
	}
	ann := map[string]string{}
	for _, a := range o.Annotations {
		ann[a.Name] = a.Value
	}
	cdi := []string{}
	for _, c := range o.CDIDevices {
		cdi = append(cdi, c.Name)
	}
	out["envs"], out["devices"], out["mounts"], out["annotations"], out["cdi_devices"] = envs, devs, mounts, ann, cdi
	return out
}

func main() {
	klog.InitFlags(nil)
	_ = flagSet("v", os.Getenv("KUBELET_PEER_V"))
	logger := klog.Background()
	ctx := klog.NewContext(context.Background(), logger)
	p := &peer{pods: map[string]*v1.Pod{}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]any{"ready": true, "kubernetes": kubernetesVersion()})
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			_ = out.Encode(map[string]any{"ok": false, "error": err.Error()})
			continue
		}
		if r.Op == "quit" {
			_ = p.stop(ctx)
			_ = out.Encode(map[string]any{"id": r.ID, "ok": true})
			return
		}
		res, err := p.handle(ctx, r)
		if err != nil {
			_ = out.Encode(map[string]any{"id": r.ID, "ok": false, "error": err.Error()})
			continue
		}
		res["id"], res["ok"] = r.ID, true
		_ = out.Encode(res)
	}
	_ = p.stop(ctx)
}
