// Command benchtool is run.sh's helper:
//
//	benchtool ports N                     print N free loopback TCP ports
//	benchtool scrape [NAME=]URL...        print watched /metrics series as JSON, keyed by NAME
//	benchtool floor -dir D                print, as JSON, the p50 of a 4 KiB write+fsync in D (appending, and over preallocated space) and of a loopback round trip
//	benchtool report -dir D -out FILE     render D's results as markdown
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/distlock/distlock/tests/bench/internal/floor"
	"github.com/distlock/distlock/tests/bench/internal/freeport"
	"github.com/distlock/distlock/tests/bench/internal/promtext"
	"github.com/distlock/distlock/tests/bench/internal/report"
)

func main() { os.Exit(run(os.Args[1:])) }

func usage() int {
	fmt.Fprintln(os.Stderr, "usage: benchtool ports N | scrape [NAME=]URL... | floor -dir D | report -dir D -out FILE")
	return 2
}

func run(args []string) int {
	if len(args) < 1 {
		return usage()
	}
	switch args[0] {
	case "ports":
		if len(args) != 2 {
			return usage()
		}
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 || n > 100 {
			return usage()
		}
		ports, err := freeport.Loopback(n)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			return 1
		}
		for i, p := range ports {
			if i > 0 {
				fmt.Print(" ")
			}
			fmt.Print(p)
		}
		fmt.Println()
		return 0
	case "scrape":
		out := map[string]map[string]float64{}
		for _, arg := range args[1:] {
			name, u, ok := strings.Cut(arg, "=")
			if !ok {
				name, u = arg, arg
			}
			m, err := promtext.Scrape(context.Background(), u, promtext.Watched)
			if err != nil {
				fmt.Fprintln(os.Stderr, "benchtool:", err)
				continue
			}
			out[name] = m
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return 1
		}
		return 0
	case "floor":
		fs := flag.NewFlagSet("floor", flag.ContinueOnError)
		dir := fs.String("dir", os.TempDir(), "directory on the file system to probe (the servers' data dir)")
		fsyncs := fs.Int("fsyncs", 500, "write+fsync rounds")
		trips := fs.Int("trips", 5000, "loopback round trips")
		if err := fs.Parse(args[1:]); err != nil {
			return usage()
		}
		r, err := floor.Measure(floor.Dir(*dir), *fsyncs, *trips)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			return 1
		}
		if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
			return 1
		}
		return 0
	case "report":
		fs := flag.NewFlagSet("report", flag.ContinueOnError)
		dir := fs.String("dir", "", "results directory (runs/*.json, ping.tsv, metrics-before.json, metrics-after.json, meta.txt)")
		out := fs.String("out", "RESULTS.md", "markdown file to write")
		if err := fs.Parse(args[1:]); err != nil || *dir == "" {
			return usage()
		}
		md, err := report.Render(*dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			return 1
		}
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchtool:", err)
			return 1
		}
		return 0
	}
	return usage()
}
