// Command goserver is the reference point of `make bench-server`: the day-38 lesson's net/http
// server with labhttp's behaviour on one listener. GET / answers the message as text/plain,
// GET /health answers "Server is healthy"; anything else is net/http's 404 or 405.
//
// It prints "listening on HOST:PORT" once bound (use port 0 for a free port) and shuts down
// gracefully on SIGTERM or SIGINT. Standard library only; bench/bench_server.sh builds it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on; port 0 picks a free port")
	message := flag.String("message", "Hello, Kubernetes and Istio!", "the body of GET /")
	flag.Parse()

	// Its own ServeMux, as in the lesson, rather than http.DefaultServeMux.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", plainText(*message))
	mux.HandleFunc("GET /health", plainText("Server is healthy"))

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "goserver: error:", err)
		os.Exit(2)
	}
	fmt.Printf("listening on %s\n", ln.Addr())

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "goserver: error:", err)
		os.Exit(1)
	}
}

// plainText answers every request it gets with body, as text/plain like labhttp does.
func plainText(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, body)
	}
}
