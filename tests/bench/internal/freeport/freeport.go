// Package freeport hands out free TCP ports on 127.0.0.1 for the benchmark
// tools that start servers.
package freeport

import "net"

// Loopback returns n distinct free ports: it holds n listeners open at once
// so that no port is handed out twice, then closes them. Another process
// could take one before it is used; callers check that their server came up.
func Loopback(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
