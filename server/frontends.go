package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/distlock/distlock/resp"
	"github.com/distlock/distlock/server/httpapi"
)

// shutdownTimeout bounds how long Close waits for in-flight HTTP requests.
const shutdownTimeout = 5 * time.Second

// frontEnds owns the RESP and HTTP listeners of a node.
type frontEnds struct {
	resp     *resp.Server
	respDone chan error
	http     *http.Server
	done     chan error
}

func (f *frontEnds) start(n *Node) error {
	if err := f.startRESP(n); err != nil {
		return err
	}
	return f.startHTTP(n)
}

func (f *frontEnds) startRESP(n *Node) error {
	if n.cfg.RESPAddr == "" {
		return nil
	}
	srv, err := resp.New(resp.Config{
		Service:    n,
		MaxClients: n.cfg.MaxClients,
		MaxTTL:     n.cfg.MaxTTL,
		MaxWait:    n.cfg.MaxWait,
		Password:   n.cfg.Password,
		Logger:     n.log.With("component", "resp"),
		Registerer: n.cfg.Registry,
	})
	if err != nil {
		return fmt.Errorf("resp server: %w", err)
	}
	ln, err := n.listenClients(n.cfg.RESPAddr)
	if err != nil {
		return fmt.Errorf("resp listener: %w", err)
	}
	n.respAddr = n.clientAddr(ln.Addr())
	f.resp = srv
	f.respDone = make(chan error, 1)
	go func() { f.respDone <- srv.Serve(ln) }()
	return nil
}

func (f *frontEnds) startHTTP(n *Node) error {
	if n.cfg.HTTPAddr == "" {
		return nil
	}
	api, err := httpapi.New(httpapi.Config{
		Service:    n,
		Metrics:    promhttp.HandlerFor(n.cfg.Registry, promhttp.HandlerOpts{Registry: n.cfg.Registry}),
		Registerer: n.cfg.Registry,
		MaxTTL:     n.cfg.MaxTTL,
		MaxWait:    n.cfg.MaxWait,
		Password:   n.cfg.Password,
		NodeID:     n.cfg.ID,
		Logger:     n.log.With("component", "http"),
	})
	if err != nil {
		return fmt.Errorf("http api: %w", err)
	}
	ln, err := n.listenClients(n.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	n.httpAddr = n.clientAddr(ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/state", n.debugState)
	if n.cfg.EnablePprof {
		mux.Handle("/debug/pprof/", n.requirePassword(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", n.requirePassword(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/trace", n.requirePassword(http.HandlerFunc(pprof.Trace)))
	}
	mux.Handle("/", api)
	f.http = httpapi.NewServer(n.httpAddr, mux)
	f.done = make(chan error, 1)
	go func() { f.done <- f.http.Serve(ln) }()
	return nil
}

// listenClients listens for clients on addr, over TLS when the node has it
// (the handshake runs on a connection's first read, on its own goroutine).
func (n *Node) listenClients(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || n.cfg.TLS == nil {
		return ln, err
	}
	return tls.NewListener(ln, n.cfg.TLS.Clients()), nil
}

func (f *frontEnds) close() error {
	var errs []error
	if f.resp != nil {
		errs = append(errs, f.resp.Close())
		if err := <-f.respDone; !errors.Is(err, resp.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if f.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		errs = append(errs, f.http.Shutdown(ctx))
		if err := <-f.done; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// clientAddr is the address other nodes and clients should use for a
// listener: a wildcard bind (0.0.0.0, ::) is replaced by the host this node
// advertises for raft.
func (n *Node) clientAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	host, _, err := net.SplitHostPort(n.cfg.RaftAdvertise)
	if err != nil || host == "" {
		return a.String()
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}
