// Command sorsa-convert prepares models for SORSA fine-tuning and folds the
// trained result back: split a model into a frozen residual and trainable
// SVD factors, merge them, verify a split, and inspect models.
//
// This package only wires flags, output and exit codes; the work lives in
// the adapter, surgery and formats packages.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/sorsa-convert/sorsa-convert/adapter"
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailed  = 1 // a check failed, or the work failed for a reason other than the input
	exitBadUse  = 2 // bad usage or bad input
	exitStopped = 130
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// actionError carries an error from a command's action (as opposed to a
// usage error found by the flag parser) with its exit status.
type actionError struct {
	err  error
	code int
}

func (e *actionError) Error() string { return e.err.Error() }
func (e *actionError) Unwrap() error { return e.err }

// errCheckFailed is returned by a command whose check did not pass; its report has
// already been printed.
var errCheckFailed = errors.New("check failed")

// fail classifies an action's error for its exit status.
func fail(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	code := exitFailed
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		code, err = exitStopped, errors.New("interrupted; no output was written")
	case errors.Is(err, adapter.ErrInput), errors.Is(err, os.ErrNotExist):
		code = exitBadUse
	}
	return &actionError{err: err, code: code}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(ctx, stdout, stderr)
	err := app.RunContext(ctx, intersperse(app, args))
	if err == nil {
		return exitOK
	}
	var ae *actionError
	if errors.As(err, &ae) {
		if !errors.Is(ae.err, errCheckFailed) {
			fmt.Fprintf(stderr, "sorsa-convert: %v\n", oneLine(ae.err))
		}
		return ae.code
	}
	fmt.Fprintf(stderr, "sorsa-convert: %v\n", oneLine(err))
	return exitBadUse
}

// oneLine keeps an error message on one line.
func oneLine(err error) string {
	b := []byte(err.Error())
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}

func newApp(ctx context.Context, stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "sorsa-convert",
		Usage:   "prepare models for SORSA fine-tuning and fold the result back",
		Version: version,
		Description: `SORSA splits each selected weight W (out × in) by SVD into trainable factors
A (r × in), S (r), B (out × r) — the top-r singular triplets — and a frozen
residual W_r = W − B·diag(S)·A. Train the factors, then merge W = W_r + B·diag(S)·A.

Examples:
  sorsa-convert inspect model.safetensors
  sorsa-convert split model.safetensors -r 128 -t llama -o out/
  sorsa-convert verify model.safetensors out/residual.safetensors out/adapter
  sorsa-convert merge out/residual.safetensors out/adapter -o merged.safetensors`,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // run() maps errors to exit codes
		Flags:           outputFlags(),
		Commands: []*cli.Command{
			inspectCommand(ctx),
			splitCommand(ctx),
			mergeCommand(ctx),
			verifyCommand(ctx),
		},
	}
}

// wantArgs checks a command's positional argument count.
func wantArgs(c *cli.Context, n int, names string) error {
	if c.NArg() != n {
		return fmt.Errorf("%s: want %d argument(s) %s, got %d (see --help)", c.Command.Name, n, names, c.NArg())
	}
	return nil
}

// threads applies --threads N: the process then runs on at most N cores
// (GOMAXPROCS), which caps every parallel part of the work (the pipeline's
// workers, the SVD's products, each weight's blocks), not only the number
// of weights in flight. It returns N for the options' Threads (0: all
// cores).
func threads(c *cli.Context) (int, error) {
	n := c.Int("threads")
	if n < 0 {
		return 0, fmt.Errorf("%s: --threads %d: want a positive number of cores (or 0 for all)", c.Command.Name, n)
	}
	if n > 0 {
		runtime.GOMAXPROCS(n)
	}
	return n, nil
}

// progress returns a progress bar on stderr, or nil when stderr is not a
// terminal or --quiet/--json was given.
func progress(c *cli.Context, label string) adapter.Progress {
	if anyBool(c, "quiet") || wantJSON(c) {
		return nil
	}
	f, ok := c.App.ErrWriter.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return &bar{w: f, label: label}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// anyBool reports whether a boolean flag was given to the command or
// before it (urfave/cli reads a command's own flag first, so a global
// --json would otherwise be shadowed by the command's unset one).
func anyBool(c *cli.Context, name string) bool {
	for _, x := range c.Lineage() {
		if x.Bool(name) {
			return true
		}
	}
	return false
}

func wantJSON(c *cli.Context) bool { return anyBool(c, "json") }
