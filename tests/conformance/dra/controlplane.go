package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// controlPlane is a real etcd and a real kube-apiserver, both on 127.0.0.1.
type controlPlane struct {
	etcd       *embed.Etcd
	cancel     context.CancelFunc
	done       chan error
	client     kubernetes.Interface
	config     *rest.Config
	kubeconfig string
	server     string
}

const testToken = "sriovdp-conformance-token"

// freeLoopbackURL reserves a free port on 127.0.0.1 and returns it as a URL.
func freeLoopbackURL(scheme string) (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	defer l.Close()
	return url.URL{Scheme: scheme, Host: l.Addr().String()}, nil
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Name = "sriovdp-conformance"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	client, err := freeLoopbackURL("http")
	if err != nil {
		return nil, "", err
	}
	peerURL, err := freeLoopbackURL("http")
	if err != nil {
		return nil, "", err
	}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, "", fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after 60s")
	}
	return e, client.String(), nil
}

// writeServiceAccountKey writes an ECDSA key for the service account token signer.
func writeServiceAccountKey(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func startControlPlane(ctx context.Context, dir string) (*controlPlane, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e, etcdURL, err := startEtcd(dir)
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{etcd: e, done: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			cp.stop()
		}
	}()

	saKey := filepath.Join(dir, "sa.key")
	if err := writeServiceAccountKey(saKey); err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(testToken+`,sriovdp-test,sriovdp-test,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := listener.Addr().(*net.TCPAddr).Port

	// What the kube-apiserver command does: its options, its flags, Complete, Validate, Run.
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	certDir := filepath.Join(dir, "pki")
	if err := fs.Parse([]string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--cert-dir=" + certDir,
		"--token-auth-file=" + tokens,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://sriovdp.conformance.invalid",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none",
		"--runtime-config=resource.k8s.io/v1=true",
		"--enable-priority-and-fairness=false",
	}); err != nil {
		return nil, fmt.Errorf("kube-apiserver flags: %w", err)
	}
	s.SecureServing.Listener = listener
	s.SecureServing.BindPort = port
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("kube-apiserver options: %v", errs)
	}
	runCtx, cancel := context.WithCancel(ctx)
	cp.cancel = cancel
	go func() { cp.done <- app.Run(runCtx, completed) }()

	cp.server = fmt.Sprintf("https://127.0.0.1:%d", port)
	caFile := filepath.Join(certDir, "apiserver.crt")
	cp.config = &rest.Config{
		Host:            cp.server,
		BearerToken:     testToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: caFile},
		QPS:             1000,
		Burst:           1000,
	}
	cp.client, err = kubernetes.NewForConfig(cp.config)
	if err != nil {
		return nil, err
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-cp.done:
			return false, fmt.Errorf("kube-apiserver exited: %v", err)
		default:
		}
		status := 0
		cp.client.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
		if status != 200 {
			return false, nil
		}
		_, err := cp.client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver not ready: %w", err)
	}

	cp.kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["conformance"] = &clientcmdapi.Cluster{Server: cp.server, CertificateAuthority: caFile}
	kc.AuthInfos["sriovdp-test"] = &clientcmdapi.AuthInfo{Token: testToken}
	kc.Contexts["conformance"] = &clientcmdapi.Context{Cluster: "conformance", AuthInfo: "sriovdp-test", Namespace: "default"}
	kc.CurrentContext = "conformance"
	if err := clientcmd.WriteToFile(*kc, cp.kubeconfig); err != nil {
		return nil, err
	}
	ok = true
	return cp, nil
}

// ensureNode creates the Node object the kubelet would register.
func (cp *controlPlane) ensureNode(ctx context.Context, name string) (*v1.Node, error) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	created, err := cp.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return cp.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	}
	return created, err
}

func (cp *controlPlane) stop() {
	if cp.cancel != nil {
		cp.cancel()
		select {
		case <-cp.done:
		case <-time.After(30 * time.Second):
		}
	}
	if cp.etcd != nil {
		cp.etcd.Close()
	}
}
