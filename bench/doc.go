// Package bench holds Miyamoto's benchmarks and the tools they need: workloads as
// data plus Run functions, so that commands only bind flags (as in pebble's bench).
//
// The simulator benchmark (sim_test.go) measures how much faster than real time the
// simulator runs a 5-node, R=3 cluster of 1,000 tasks over 60 s of simulated time with
// faults, and how many simulated events it handles per second:
//
//	go test -run '^$' -bench Sim -benchtime 20x ./bench/
//
// The real-network comparison measures Miyamoto against the physical limit of HTTP
// in, HTTP out on the machine:
//
//   - Sink is a worker that answers 200 at once and counts deliveries by X-Task-Id;
//   - Relay takes Miyamoto's enqueue request, answers at once and forwards the body
//     to the task URL: the baseline, with no storage, replication or countdown;
//   - RunLoad runs a LoadConfig (open loop at a rate, or closed loop with N clients)
//     against any node and reports acknowledged enqueues, errors and latency;
//   - Compare runs one load against the baseline, a single node (R=1) and a
//     three-node R=3 cluster (each also with storage), and the peers (asynq on a
//     redis-server it starts and stops, River on SQLite: see peers.go), each started
//     on loopback with a fresh sink, waits until every acknowledged task was
//     delivered, and reports enqueue and delivered rates, latencies, lateness past
//     the due time, duplicates and each delivered rate's ratio to the baseline's.
//
// The command bench/cmd/compare only binds flags to a CompareConfig:
//
//	go run ./bench/cmd/compare -mode closed -concurrency 32 -duration 10s
//
// The command bench/cmd/versus runs both benchmarks in this working tree and in an
// earlier commit's (written to a temporary directory), round by round, and prints
// the two sides' medians (the README's "Before and after membership"):
//
//	go run ./bench/cmd/versus -base 096cb31 -rounds 5
//
// It must never send traffic beyond 127.0.0.1: every server it starts listens on
// loopback, and the command takes no address. Every load is bounded in time, every
// wait has a deadline, and everything started is stopped before Compare returns.
package bench
