// Command testserver is the real-node tests' own image: a static HTTP server that answers
// GET / with $MESSAGE on $PORT (default 8080) and logs one line per request, so a test can check
// a pod's IP, a ClusterIP, `kubectl logs`, `exec` and `port-forward` without any registry.
// `testserver -get URL` prints a URL's body: the command `kubectl exec` runs inside the pod; an
// https URL is verified against the pod's service-account CA (so the apiserver's ClusterIP works).
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
)

const serviceAccountCA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-get" {
		os.Exit(get(os.Args[2]))
	}
	port, message := env("PORT", "8080"), env("MESSAGE", "hello from the real node")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("request method=%s path=%s remote=%s", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprint(w, message)
	})
	log.Printf("listening port=%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}

func get(url string) int {
	client := http.DefaultClient
	if pem, err := os.ReadFile(serviceAccountCA); err == nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	return 0
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
