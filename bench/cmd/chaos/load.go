package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/miyamotohq/miyamoto/net/client"
)

// The queues of a run: one at-least-once (the default), one at-most-once, and,
// with the settings fault, an at-least-once one with a max_concurrent the nemesis
// flips (initialCap at the start).
const (
	queueAtLeastOnce = "chaos-alo"
	queueAtMostOnce  = "chaos-amo"
	queueCapped      = "chaos-capped"
	initialCap       = 2
	// cappedEvery: with the settings fault, every cappedEvery-th task goes to
	// queueCapped (2.5 a second at the default rate: a cap of 1 keeps up with it).
	cappedEvery = 8
)

// LoadConfig is the steady enqueue load.
type LoadConfig struct {
	Nodes     func() []string // the members' API URLs at the moment (a replace changes them)
	WorkerURL string
	Rate      float64       // tasks a second, over both queues
	Duration  time.Duration // how long enqueues start
	// MaxCountdown: each task is due between 0 and this many whole seconds after
	// its enqueue (chosen from its sequence number), so deliveries spread across
	// the faults.
	MaxCountdown int
	// Capped: every cappedEvery-th task goes to queueCapped.
	Capped bool
	// Names: task names come from a pool of this many (t000000 to t<Names-1>),
	// each enqueue tried first through the first member, so a name is enqueued
	// again and again through one coordinator; 0: every task has a name of its own.
	Names int
}

// Timing of one enqueue: each try waits at most enqueueTryTimeout (the node's own
// enqueue timeout is 5 s), tries move to the next node after enqueueRetryDelay,
// and the enqueue gives up after enqueueGiveUp.
const (
	enqueueTryTimeout = 6 * time.Second
	enqueueRetryDelay = 200 * time.Millisecond
	enqueueGiveUp     = 15 * time.Second
	maxInFlight       = 2048
)

// LoadResult is what the load saw.
type LoadResult struct {
	Started  int // enqueues started (ticks of the load)
	Acked    []Ack
	NotAcked int   // enqueues given up on without an answer saying stored
	Skipped  int   // ticks with maxInFlight enqueues already waiting
	BadInput error // a 4xx other than a duplicate name: the tool's own mistake
}

// RunLoad enqueues at cfg.Rate for cfg.Duration (or until ctx ends), each task
// named so that trying again through another node is safe, alternating between the
// two queues, and waits for the enqueues in flight (at most enqueueGiveUp).
func RunLoad(ctx context.Context, cfg LoadConfig) LoadResult {
	clients := &clientCache{m: map[string]*client.Client{}}
	var (
		mu  sync.Mutex
		res LoadResult
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, maxInFlight)
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	end := time.After(cfg.Duration)
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
		case <-end:
		case <-ticker.C:
			res.Started++ // only this goroutine writes it; read after wg.Wait
			select {
			case sem <- struct{}{}:
			default:
				mu.Lock()
				res.Skipped++
				mu.Unlock()
				continue
			}
			wg.Add(1)
			go func(seq int) {
				defer wg.Done()
				defer func() { <-sem }()
				ack, err := enqueueOne(ctx, clients, cfg, seq)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					res.Acked = append(res.Acked, ack)
				case errors.Is(err, errBadInput) && res.BadInput == nil:
					res.BadInput = err
				default:
					res.NotAcked++
				}
			}(seq)
			continue
		}
		break
	}
	wg.Wait()
	return res
}

// clientCache keeps one client a node, so that enqueues reuse connections.
type clientCache struct {
	mu sync.Mutex
	m  map[string]*client.Client
}

func (c *clientCache) get(url string) *client.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[url] == nil {
		c.m[url], _ = client.New(url, "", enqueueTryTimeout) // URLs the tool made: always valid
	}
	return c.m[url]
}

// errBadInput marks a refusal of the tool's own request.
var errBadInput = errors.New("a node refused the chaos tool's request")

// enqueueOne enqueues task seq, trying node after node until one says it is
// stored, or enqueueGiveUp passes.
func enqueueOne(ctx context.Context, clients *clientCache, cfg LoadConfig, seq int) (Ack, error) {
	queue, amo := queueAtLeastOnce, false
	switch {
	case cfg.Capped && seq%cappedEvery == cappedEvery-1:
		queue = queueCapped
	case seq%2 == 1:
		queue, amo = queueAtMostOnce, true
	}
	name, first := fmt.Sprintf("t%06d", seq), seq
	if cfg.Names > 0 {
		// The queue follows seq's parity, so a name of an even pool is on one queue.
		name, first = fmt.Sprintf("t%06d", seq%cfg.Names), 0
	}
	task := map[string]any{"url": cfg.WorkerURL, "name": name, "countdown": seq * 7919 % (cfg.MaxCountdown + 1)}
	giveUp := time.Now().Add(enqueueGiveUp)
	var last error
	for try := 0; time.Now().Before(giveUp); try++ {
		nodes := cfg.Nodes()
		body, err := clients.get(nodes[(first+try)%len(nodes)]).Enqueue(ctx, queue, task)
		scheduled := err == nil
		id, err := storedID(body, err)
		if err == nil {
			return Ack{Task: id, Queue: queue, Name: name, AtMostOnce: amo, At: time.Now(), Scheduled: scheduled}, nil
		}
		if errors.Is(err, errBadInput) {
			return Ack{}, err
		}
		last = err
		select {
		case <-ctx.Done():
			return Ack{}, ctx.Err()
		case <-time.After(enqueueRetryDelay):
		}
	}
	return Ack{}, fmt.Errorf("%s gave up: %w", name, last)
}

// storedID reads the ID of a stored task from an enqueue's answer: a 200, or a 409
// for the name (an earlier try stored it). Any other 4xx is errBadInput; a 5xx or no
// answer is worth another try.
func storedID(body []byte, err error) (string, error) {
	var answer struct{ ID string }
	var apiErr *client.Error
	switch {
	case err == nil:
	case errors.As(err, &apiErr) && apiErr.Code == http.StatusConflict && apiErr.Field == "name":
		body = apiErr.Body
	case errors.As(err, &apiErr) && apiErr.Code < 500:
		return "", fmt.Errorf("%w: %v", errBadInput, err)
	default:
		return "", err
	}
	if json.Unmarshal(body, &answer) != nil || answer.ID == "" {
		return "", fmt.Errorf("%w: an answer without an id: %q", errBadInput, body)
	}
	return answer.ID, nil
}
