// pod-streams: the streaming endpoints a kubelet serves, for the local mesh's network-namespace pods.
//
// kube-apiserver answers `kubectl port-forward` (and istioctl's proxy-config and proxy-status,
// which port-forward to Envoy's admin port and to istiod) and `kubectl logs` by proxying the
// request to the kubelet of the pod's node, at https://<node address>:<kubelet port>/portForward/
// <namespace>/<pod> and /containerLogs/<namespace>/<pod>/<container>. The local mesh has no
// kubelet: the harness is the node agent, and this program is the part of a kubelet that serves
// those two, port-forward on the kubelet's own streaming code
// (k8s.io/kubelet/pkg/cri/streaming/portforward, SPDY and WebSocket). Each forwarded stream is
// connected to 127.0.0.1:<port> inside the pod's network namespace, as a kubelet does through
// the container runtime; a container's log is the file its process writes (the harness's
// mesh-logs), with tailLines, limitBytes and follow.
//
// Only the API server may connect: TLS with a client certificate signed by --client-ca whose
// CommonName is --client-name (kubeadm's kube-apiserver-kubelet-client).
// --pods names a JSON file {"namespace/pod": {"netns": path, "logs": {container: path or ""}}}
// that the harness rewrites as pods come and go; it is read on each request.
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
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
)

type podFiles struct {
	Netns string            `json:"netns"`
	Logs  map[string]string `json:"logs"`
}

type forwarder struct {
	podsFile string
}

func (f forwarder) pod(name string) (podFiles, error) {
	data, err := os.ReadFile(f.podsFile)
	if err != nil {
		return podFiles{}, err
	}
	pods := map[string]podFiles{}
	if err := json.Unmarshal(data, &pods); err != nil {
		return podFiles{}, fmt.Errorf("%s: %w", f.podsFile, err)
	}
	p, ok := pods[name]
	if !ok {
		return podFiles{}, fmt.Errorf("no pod %s on this node", name)
	}
	return p, nil
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
	p, err := f.pod(pod)
	if err != nil {
		return err
	}
	conn, err := dialIn(p.Netns, port)
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
	// The pod's side ended: close the stream so the client sees EOF (the kubelet library's ctx
	// is never cancelled), then give the client's side a moment to finish, as containerd does.
	stream.Close()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	return nil
}

// serveLog writes a container's log file as the kubelet's /containerLogs does: the last
// tailLines lines, at most limitBytes, and with follow=true whatever is appended until the
// client goes away.
func (f forwarder) serveLog(w http.ResponseWriter, r *http.Request, pod, container string) {
	p, err := f.pod(pod)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	path, ok := p.Logs[container]
	if !ok {
		http.Error(w, fmt.Sprintf("container %s of pod %s runs no process on this node, so it has no log", container, pod),
			http.StatusNotFound)
		return
	}
	if path == "" { // a container without a process of its own: nothing logged
		w.Header().Set("Content-Type", "text/plain")
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	offset := int64(len(data))
	query := r.URL.Query()
	for _, unsupported := range []string{"previous", "timestamps", "sinceSeconds", "sinceTime"} {
		if v := query.Get(unsupported); v != "" && v != "false" {
			http.Error(w, fmt.Sprintf("pod-streams does not support %s: the log files carry their own timestamps", unsupported),
				http.StatusBadRequest)
			return
		}
	}
	limit := -1
	if n, err := strconv.Atoi(query.Get("limitBytes")); err == nil && n >= 0 {
		limit = n
	}
	if n, err := strconv.Atoi(query.Get("tailLines")); err == nil && n >= 0 {
		lines := strings.SplitAfter(string(data), "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > n {
			data = []byte(strings.Join(lines[len(lines)-n:], ""))
		}
	}
	if limit >= 0 && len(data) > limit {
		data = data[:limit]
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(data)
	written := len(data)
	if query.Get("follow") != "true" || (limit >= 0 && written >= limit) {
		return
	}
	flusher, _ := w.(http.Flusher)
	file, err := os.Open(path)
	if err != nil {
		return
	}
	defer file.Close()
	buf := make([]byte, 32*1024)
	for {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		for {
			n, err := file.ReadAt(buf, offset)
			if limit >= 0 && written+n > limit {
				n = limit - written
			}
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				offset += int64(n)
				written += n
			}
			if limit >= 0 && written >= limit {
				return
			}
			if err != nil { // io.EOF: wait for more
				break
			}
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:10250", "address to serve on")
	cert := flag.String("cert", "", "serving certificate (PEM)")
	key := flag.String("key", "", "serving key (PEM)")
	clientCA := flag.String("client-ca", "", "CA that signs the API server's client certificate")
	pods := flag.String("pods", "", `JSON file {"namespace/pod": {"netns": path, "logs": {container: path}}}`)
	clientName := flag.String("client-name", "kube-apiserver-kubelet-client",
		"the only client certificate CommonName served (the API server's kubelet client)")
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
	mux.HandleFunc("/containerLogs/", func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/"), "/")
		if len(parts) != 3 {
			http.NotFound(w, r)
			return
		}
		f.serveLog(w, r, parts[0]+"/"+parts[1], parts[2])
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// exec and attach need a container runtime, which the local mesh's pods do not have.
		http.Error(w, "pod-streams serves port-forward and logs only (the local mesh's pods have no container runtime)",
			http.StatusNotImplemented)
	})
	server := &http.Server{
		Addr:    *listen,
		Handler: mux,
		TLSConfig: &tls.Config{
			ClientAuth: tls.RequireAndVerifyClientCert,
			ClientCAs:  pool,
			MinVersion: tls.VersionTLS12,
			// The run's CA also signs the admin's and etcd's client certificates: only the API
			// server's kubelet client may open streams into the pods.
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || cs.PeerCertificates[0].Subject.CommonName != *clientName {
					return fmt.Errorf("pod-streams serves only %s", *clientName)
				}
				return nil
			},
		},
		ReadHeaderTimeout: 10 * time.Second,
		// HTTP/1.1 only: port-forward is an Upgrade (SPDY or WebSocket), which HTTP/2 cannot carry.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("pod-streams serving on %s\n", ln.Addr())
	os.Stdout.Sync()
	log.Fatal(server.ServeTLS(ln, *cert, *key))
}
