// Package bench holds Miyamoto's benchmarks and the tools they need: workloads as
// data plus Run functions, so that commands only bind flags (as in pebble's bench).
//
// The simulator benchmark (sim_test.go) measures how much faster than real time the
// simulator runs a 5-node, R=3 cluster of 1,000 tasks over 60 s of simulated time with
// faults, and how many simulated events it handles per second:
//
//	go test -run '^$' -bench Sim -benchtime 20x ./bench/
package bench
