package adapter

import (
	"context"
	"runtime"
	"sync"
)

// pipeline runs jobs on a pool of workers and hands their results back in
// job order. At most `window` results exist at once (computing or waiting to
// be taken), which bounds memory to a few matrices whatever the model size,
// while the consumer (the writer) overlaps I/O with the workers' compute.
type pipeline[R any] struct {
	results []chan outcome[R]
	slots   chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type outcome[R any] struct {
	val R
	err error
}

// pipelineWindow returns how many results a pipeline on threads workers
// (all cores when ≤ 0) holds at most: one per worker and one waiting.
func pipelineWindow(threads int) int {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return threads + 1
}

// startPipeline starts n jobs on threads workers (all cores when ≤ 0).
func startPipeline[R any](ctx context.Context, threads, n int, job func(ctx context.Context, i int) (R, error)) *pipeline[R] {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &pipeline[R]{
		results: make([]chan outcome[R], n),
		slots:   make(chan struct{}, pipelineWindow(threads)),
		cancel:  cancel,
	}
	for i := range p.results {
		p.results[i] = make(chan outcome[R], 1)
	}
	next := make(chan int)
	// The dispatcher hands out jobs in order, each once a slot is free.
	go func() {
		defer close(next)
		for i := 0; i < n; i++ {
			select {
			case p.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for w := 0; w < threads; w++ {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for i := range next {
				if err := ctx.Err(); err != nil {
					p.results[i] <- outcome[R]{err: err}
					continue
				}
				v, err := job(ctx, i)
				p.results[i] <- outcome[R]{val: v, err: err}
			}
		}()
	}
	return p
}

// take waits for job i's result and frees its slot. Jobs must be taken in
// order.
func (p *pipeline[R]) take(ctx context.Context, i int) (R, error) {
	select {
	case o := <-p.results[i]:
		<-p.slots
		return o.val, o.err
	case <-ctx.Done():
		var zero R
		return zero, ctx.Err()
	}
}

// stop cancels outstanding jobs and waits for the workers to return.
func (p *pipeline[R]) stop() {
	p.cancel()
	p.wg.Wait() // result channels are buffered: no worker blocks on a send
}
