// pod-streams: the streaming endpoint a kubelet serves, for the local mesh's network-namespace pods.
//
// kube-apiserver answers `kubectl port-forward` (and istioctl's proxy-config and proxy-status,
// which port-forward to Envoy's admin port and to istiod) by proxying the request to the kubelet
// of the pod's node at https://<node address>:<kubelet port>/portForward/<namespace>/<pod>. The
// local mesh has no kubelet: the harness is the node agent, and this program is the part of a
// kubelet that serves port-forwards, built on the kubelet's own streaming code
// (k8s.io/kubelet/pkg/cri/streaming/portforward, SPDY and WebSocket). Each forwarded stream is
// connected to 127.0.0.1:<port> inside the pod's network namespace, as a kubelet does through
// the container runtime.
//
// Only the API server may connect: TLS with a client certificate signed by --client-ca.
// --pods names a JSON file {"namespace/pod": "/var/run/netns/<name>"} that the harness rewrites
// as pods come and go; it is read on each stream.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
)

type forwarder struct {
	podsFile string
}

func (f forwarder) netnsOf(pod string) (string, error) {
	data, err := os.ReadFile(f.podsFile)
	if err != nil {
		return "", err
	}
	pods := map[string]string{}
	if err := json.Unmarshal(data, &pods); err != nil {
		return "", fmt.Errorf("%s: %w", f.podsFile, err)
	}
	path, ok := pods[pod]
	if !ok {
		return "", fmt.Errorf("no pod %s on this node", pod)
	}
	return path, nil
}

// dialIn connects to 127.0.0.1:port inside the network namespace at nsPath. A socket belongs to
// the namespace it is created in, so only the socket() call needs this thread in the pod's
// namespace; the thread goes back to its own before it is released. Should going back fail, the
// thread stays locked and the Go runtime ends it with this goroutine, never reusing it.
func dialIn(nsPath string, port int32) (net.Conn, error) {
	runtime.LockOSThread()
	own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer unix.Close(own)
	target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering %s: %w", nsPath, err)
	}
	conn, dialErr := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err := unix.Setns(own, unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leaving %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// PortForward copies between the client's stream and the pod's port until either side closes.
func (f forwarder) PortForward(ctx context.Context, pod string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	nsPath, err := f.netnsOf(pod)
	if err != nil {
		return err
	}
	conn, err := dialIn(nsPath, port)
	if err != nil {
		return fmt.Errorf("pod %s port %d: %w", pod, port, err)
	}
	defer conn.Close()
	log.Printf("port-forward %s:%d", pod, port)
	done := make(chan struct{})
	go func() {
		io.Copy(conn, stream)
		if tcp, ok := conn.(*net.TCPConn); ok {
			tcp.CloseWrite()
		}
		close(done)
	}()
	io.Copy(stream, conn)
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:10250", "address to serve on")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "serving key (PEM)")
	clientCA := flag.String("client-ca", "", "CA that signs the API server's client certificate")
	pods := flag.String("pods", "", `JSON file {"namespace/pod": "netns path"}`)
	flag.Parse()
	if *cert == "" || *key == "" || *clientCA == "" || *pods == "" {
		log.Fatal("pod-streams: --cert, --key, --client-ca and --pods are required")
	}
	caPEM, err := os.ReadFile(*clientCA)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatalf("no certificate in %s", *clientCA)
	}
	f := forwarder{podsFile: *pods}
	mux := http.NewServeMux()
	mux.HandleFunc("/portForward/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/portForward/"), "/"), "/")
		if len(parts) != 2 {
			http.NotFound(w, r)
			return
		}
		options, err := portforward.NewV4Options(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		portforward.ServePortForward(w, r, f, parts[0]+"/"+parts[1], "", options,
			4*time.Hour, 30*time.Second, portforward.SupportedProtocols)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// exec, attach and logs need a container runtime: the harness keeps each pod's logs as files.
		http.Error(w, "pod-streams serves port-forward only (the local mesh's pods have no container runtime)",
			http.StatusNotImplemented)
	})
	server := &http.Server{
		Addr:    *listen,
		Handler: mux,
		TLSConfig: &tls.Config{
			ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs:  pool,
			MinVersion: tls.VersionTLS12,
		},
		ReadHeaderTimeout: 10 * time.Second,
		// HTTP/1.1 only: port-forward is an Upgrade (SPDY or WebSocket), which HTTP/2 cannot carry.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The harness waits for this line: the port is bound.
	fmt.Printf("pod-streams serving on %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(server.ServeTLS(ln, *cert, *key))
}
