package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/dynamic-resource-allocation/cel"
	"k8s.io/dynamic-resource-allocation/structured"
	"k8s.io/klog/v2"
	pluginwatcherapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/kubernetes/pkg/kubelet/cm/dra"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/dynamicresources"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
)

// peer holds the control plane, the kubelet generation (DRA manager and plugin watcher
// of one node; it can be stopped and started again) and the pods the kubelet runs.
type peer struct {
	mu      sync.Mutex
	cp      *controlPlane
	kubelet *kubeletGen
	pods    map[string]*podEntry
}

type podEntry struct{ pod *v1.Pod }

type kubeletGen struct {
	nodeName string
	manager  *dra.Manager
	cancel   context.CancelFunc
	stopCh   chan struct{}

	healthMu sync.Mutex
	health   []healthUpdate
}

// healthUpdate is one message of the DRA manager's update channel (Manager.Updates: the
// pods whose devices' health changed, which the kubelet's sync loop reads to sync their
// status) and when it came (Unix nanoseconds, the wall clock).
type healthUpdate struct {
	At   int64    `json:"at_unix_nano"`
	Pods []string `json:"pods"`
}

// readUpdates reads the DRA manager's update channel as the kubelet's sync loop does,
// keeping each message with its arrival time until health_updates takes them.
func (g *kubeletGen) readUpdates(ctx context.Context) {
	updates := g.manager.Updates()
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-updates:
			at := time.Now().UnixNano()
			g.healthMu.Lock()
			g.health = append(g.health, healthUpdate{At: at, Pods: u.PodUIDs})
			g.healthMu.Unlock()
		}
	}
}

// takeHealthUpdates returns the update channel's messages since the last call.
func (g *kubeletGen) takeHealthUpdates() []healthUpdate {
	g.healthMu.Lock()
	defer g.healthMu.Unlock()
	out := g.health
	g.health = nil
	if out == nil {
		out = []healthUpdate{}
	}
	return out
}

func (p *peer) activePods() []*v1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*v1.Pod, 0, len(p.pods))
	for _, e := range p.pods {
		out = append(out, e.pod)
	}
	return out
}

func (p *peer) handle(ctx context.Context, r request) (any, error) {
	switch r.Op {
	case "version":
		return map[string]string{
			"kubernetes":                  moduleVersion("k8s.io/kubernetes"),
			"etcd":                        moduleVersion("go.etcd.io/etcd/server/v3"),
			"dynamic-resource-allocation": moduleVersion("k8s.io/dynamic-resource-allocation"),
		}, nil
	case "start":
		return p.start(ctx, r)
	case "kubelet_start":
		return p.kubeletStart(ctx, r)
	case "kubelet_stop":
		p.kubeletStop()
		return nil, nil
	case "allocate":
		return p.allocate(ctx, r)
	case "prepare":
		return p.prepare(ctx, r)
	case "unprepare":
		return p.unprepare(ctx, r)
	case "cdi_resolve":
		return cdiResolve(r.SpecDir, r.CDIDevices)
	case "pod_health":
		return p.podHealth(ctx, r)
	case "health_updates":
		if p.kubelet == nil {
			return nil, fmt.Errorf("kubelet not started")
		}
		return p.kubelet.takeHealthUpdates(), nil
	case "stop":
		p.stop()
		return nil, nil
	}
	return nil, fmt.Errorf("unknown op %q", r.Op)
}

func (p *peer) start(ctx context.Context, r request) (any, error) {
	if p.cp != nil {
		return nil, fmt.Errorf("already started")
	}
	cp, err := startControlPlane(ctx, r.Dir)
	if err != nil {
		return nil, err
	}
	p.cp = cp
	return map[string]any{"kubeconfig": cp.kubeconfig, "server": cp.server}, nil
}

// kubeletStart is what the kubelet's container manager and Kubelet do for DRA: the DRA
// manager on its state dir, started, its registration handler given to the plugin
// watcher on the plugins registry dir.
// The Node object is created first, as the kubelet registers its node.
func (p *peer) kubeletStart(ctx context.Context, r request) (any, error) {
	if p.cp == nil {
		return nil, fmt.Errorf("not started")
	}
	if p.kubelet != nil {
		return nil, fmt.Errorf("kubelet already started")
	}
	node, err := p.cp.ensureNode(ctx, r.NodeName)
	if err != nil {
		return nil, fmt.Errorf("create node: %w", err)
	}
	logger := klog.FromContext(ctx)
	if err := os.MkdirAll(r.StateDir, 0o755); err != nil {
		return nil, err
	}
	// The manager's client, observed: the DRA plugin manager wipes the node's
	// ResourceSlices when it starts (and 30s after a driver's last plugin goes away); the
	// answer waits for that first wipe so a test knows it happened and when.
	wiped := make(chan struct{})
	var once sync.Once
	cfg := rest.CopyConfig(p.cp.config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if req.Method == http.MethodDelete && strings.HasSuffix(req.URL.Path, "/resourceslices") &&
				err == nil && resp.StatusCode < 300 {
				once.Do(func() { close(wiped) })
			}
			return resp, err
		})
	}
	kubeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	m, err := dra.NewManager(logger, kubeClient, r.StateDir)
	if err != nil {
		return nil, err
	}
	gctx, cancel := context.WithCancel(ctx)
	g := &kubeletGen{nodeName: r.NodeName, manager: m, cancel: cancel, stopCh: make(chan struct{})}
	ready := config.NewSourcesReady(func(sets.Set[string]) bool { return true })
	nodeName := r.NodeName
	getNode := func(ctx context.Context) (*v1.Node, error) {
		return p.cp.client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	}
	if err := m.Start(gctx, p.activePods, getNode, ready); err != nil {
		cancel()
		return nil, err
	}
	go g.readUpdates(gctx)
	pm := pluginmanager.NewPluginManager(r.PluginsRegistry, &record.FakeRecorder{})
	pm.AddHandler(pluginwatcherapi.DRAPlugin, m.GetWatcherHandler())
	go pm.Run(gctx, ready, g.stopCh)
	p.kubelet = g
	select {
	case <-wiped:
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("the DRA manager did not wipe the node's ResourceSlices at start within 30s")
	}
	return map[string]any{"node_uid": string(node.UID)}, nil
}

func (p *peer) kubeletStop() {
	if p.kubelet == nil {
		return
	}
	close(p.kubelet.stopCh)
	p.kubelet.cancel()
	p.kubelet.manager.Stop()
	p.kubelet = nil
}

// allocate is the scheduler's part for one pod on our node: the structured allocator
// with the scheduler's feature set over the classes, slices and allocated devices in the
// API server; the results are written into the claims' status with the pod in
// reservedFor (the scheduler's PreBind). No allocation is reported as unschedulable.
func (p *peer) allocate(ctx context.Context, r request) (any, error) {
	if p.cp == nil {
		return nil, fmt.Errorf("not started")
	}
	client := p.cp.client
	node, err := client.CoreV1().Nodes().Get(ctx, r.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var claims []*resourceapi.ResourceClaim
	for _, name := range r.Claims {
		claim, err := client.ResourceV1().ResourceClaims(r.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		claims = append(claims, claim)
	}
	sliceList, err := client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	slices := make([]*resourceapi.ResourceSlice, 0, len(sliceList.Items))
	for i := range sliceList.Items {
		slices = append(slices, &sliceList.Items[i])
	}
	classList, err := client.ResourceV1().DeviceClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	classes := classLister{}
	for i := range classList.Items {
		classes[classList.Items[i].Name] = &classList.Items[i]
	}
	allClaims, err := client.ResourceV1().ResourceClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	allocated := structured.AllocatedState{
		AllocatedDevices:         sets.New[structured.DeviceID](),
		AllocatedSharedDeviceIDs: sets.New[structured.SharedDeviceID](),
		AggregatedCapacity:       structured.NewConsumedCapacityCollection(),
	}
	for _, c := range allClaims.Items {
		if c.Status.Allocation == nil {
			continue
		}
		for _, res := range c.Status.Allocation.Devices.Results {
			allocated.AllocatedDevices.Insert(structured.MakeDeviceID(res.Driver, res.Pool, res.Device))
		}
	}

	fts := feature.NewSchedulerFeaturesFromGates(utilfeature.DefaultFeatureGate)
	celCache := cel.NewCache(10, cel.Features{
		EnableConsumableCapacity: fts.EnableDRAConsumableCapacity,
		EnableListTypeAttributes: fts.EnableDRAListTypeAttributes,
	})
	allocator, err := structured.NewAllocator(ctx, dynamicresources.AllocatorFeatures(fts), allocated, classes, slices, celCache)
	if err != nil {
		return nil, err
	}
	results, err := allocator.Allocate(ctx, node, claims)
	if err != nil {
		return nil, err
	}
	if results == nil {
		return map[string]any{"allocated": false}, nil
	}
	var out []any
	for i, claim := range claims {
		claim = claim.DeepCopy()
		allocation := results[i]
		claim.Status.Allocation = &allocation
		if r.Pod != nil {
			claim.Status.ReservedFor = append(claim.Status.ReservedFor, resourceapi.ResourceClaimConsumerReference{
				Resource: "pods", Name: r.Pod.Name, UID: types.UID(r.Pod.UID),
			})
		}
		updated, err := client.ResourceV1().ResourceClaims(claim.Namespace).UpdateStatus(ctx, claim, metav1.UpdateOptions{})
		if err != nil {
			return nil, fmt.Errorf("write allocation of %s: %w", claim.Name, err)
		}
		out = append(out, updated.Status)
	}
	return map[string]any{"allocated": true, "status": out}, nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

type classLister map[string]*resourceapi.DeviceClass

func (c classLister) List() ([]*resourceapi.DeviceClass, error) {
	out := make([]*resourceapi.DeviceClass, 0, len(c))
	for _, class := range c {
		out = append(out, class)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (c classLister) Get(name string) (*resourceapi.DeviceClass, error) {
	if class, ok := c[name]; ok {
		return class, nil
	}
	return nil, apierrors.NewNotFound(resourceapi.Resource("deviceclasses"), name)
}

func (p *peer) podFrom(spec *podSpec) *v1.Pod {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: spec.Name, Namespace: spec.Namespace, UID: types.UID(spec.UID),
	}}
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	if p.kubelet != nil {
		pod.Spec.NodeName = p.kubelet.nodeName
	}
	for _, c := range spec.Claims {
		name := c.ClaimName
		pod.Spec.ResourceClaims = append(pod.Spec.ResourceClaims, v1.PodResourceClaim{Name: c.Name, ResourceClaimName: &name})
	}
	for _, c := range spec.Containers {
		container := v1.Container{Name: c.Name}
		for _, claim := range c.Claims {
			container.Resources.Claims = append(container.Resources.Claims, v1.ResourceClaim{Name: claim})
		}
		pod.Spec.Containers = append(pod.Spec.Containers, container)
	}
	return pod
}

// prepare admits the pod on the kubelet: the DRA manager's PrepareResources, then what
// it hands the runtime for each container (GetResources: the CDI device ids).
func (p *peer) prepare(ctx context.Context, r request) (any, error) {
	if p.kubelet == nil {
		return nil, fmt.Errorf("kubelet not started")
	}
	if r.Pod == nil {
		return nil, fmt.Errorf("prepare needs a pod")
	}
	pod := p.podFrom(r.Pod)
	p.mu.Lock()
	p.pods[string(pod.UID)] = &podEntry{pod: pod}
	p.mu.Unlock()
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.kubelet.manager.PrepareResources(pctx, pod); err != nil {
		return nil, err
	}
	containers := map[string][]string{}
	for i := range pod.Spec.Containers {
		info, err := p.kubelet.manager.GetResources(pod, &pod.Spec.Containers[i])
		if err != nil {
			return nil, err
		}
		ids := []string{}
		for _, d := range info.CDIDevices {
			ids = append(ids, d.Name)
		}
		containers[pod.Spec.Containers[i].Name] = ids
	}
	return map[string]any{"cdi_devices": containers}, nil
}

// unprepare is the kubelet's part when the pod is gone: UnprepareResources.
func (p *peer) unprepare(ctx context.Context, r request) (any, error) {
	if p.kubelet == nil {
		return nil, fmt.Errorf("kubelet not started")
	}
	if r.Pod == nil {
		return nil, fmt.Errorf("unprepare needs a pod")
	}
	pod := p.podFrom(r.Pod)
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.kubelet.manager.UnprepareResources(pctx, pod); err != nil {
		return nil, err
	}
	p.mu.Lock()
	delete(p.pods, string(pod.UID))
	p.mu.Unlock()
	return nil, nil
}

// podHealth is what the kubelet's status manager asks the DRA manager for a pod's
// container statuses: allocatedResourcesStatus, from the plugin's health stream.
func (p *peer) podHealth(ctx context.Context, r request) (any, error) {
	if p.kubelet == nil {
		return nil, fmt.Errorf("kubelet not started")
	}
	if r.Pod == nil {
		return nil, fmt.Errorf("pod_health needs a pod")
	}
	pod := p.podFrom(r.Pod)
	status := &v1.PodStatus{}
	for _, c := range pod.Spec.Containers {
		status.ContainerStatuses = append(status.ContainerStatuses, v1.ContainerStatus{Name: c.Name})
	}
	p.kubelet.manager.UpdateAllocatedResourcesStatus(klog.FromContext(ctx), pod, status)
	out := map[string][]v1.ResourceStatus{}
	for _, cs := range status.ContainerStatuses {
		out[cs.Name] = cs.AllocatedResourcesStatus
	}
	return out, nil
}

func (p *peer) stop() {
	p.kubeletStop()
	if p.cp != nil {
		p.cp.stop()
		p.cp = nil
	}
}
