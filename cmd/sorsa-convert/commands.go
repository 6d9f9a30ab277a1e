package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/sorsa-convert/sorsa-convert/adapter"
	"github.com/sorsa-convert/sorsa-convert/surgery"
)

// outputFlags are accepted by every command as well as before it.
func outputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print a machine-readable JSON report on stdout"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar"},
	}
}

func bufferedIOFlag() cli.Flag {
	return &cli.BoolFlag{Name: "buffered-io", Usage: "write outputs through the page cache (default: large files use direct I/O, which takes less CPU time and leaves the cache to the input)"}
}

func targetFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "target", Aliases: []string{"t"},
		Usage: "regular expression over tensor names, or a preset (llama, attention, mlp); repeatable; default: every 2-D float *.weight except embeddings, output heads and norms"}
}

func inspectCommand(ctx context.Context) *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "list a model's tensors and which ones split would target",
		ArgsUsage: "MODEL",
		Description: `MODEL is a .safetensors file, a Hugging Face checkpoint folder, a .gguf or an .onnx file.

Examples:
  sorsa-convert inspect model.safetensors
  sorsa-convert inspect ./Llama-2-7b-hf -t llama --json | jq .totals`,
		Flags: append(outputFlags(), targetFlag()),
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 1, "MODEL"); err != nil {
				return err
			}
			pats, err := adapter.CompilePatterns(c.StringSlice("target"))
			if err != nil {
				return err
			}
			info, err := adapter.Inspect(c.Args().First(), pats)
			if err != nil {
				return fail(ctx, err)
			}
			if wantJSON(c) {
				return printJSON(c.App.Writer, info)
			}
			printInspect(c.App.Writer, info)
			return nil
		},
	}
}

func printInspect(w io.Writer, info *adapter.ModelInfo) {
	fmt.Fprintf(w, "%s (%s)\n", info.Path, info.Format)
	if len(info.Meta) > 0 {
		keys := make([]string, 0, len(info.Meta))
		for k := range info.Meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %v\n", k, info.Meta[k])
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tdtype\tshape\tbytes\ttarget\t")
	for _, t := range info.Tensors {
		mark := ""
		switch {
		case t.Target:
			mark = fmt.Sprintf("yes %d×%d", t.Out, t.In)
			if t.Transposed {
				mark += " (stored in×out)"
			}
			if len(t.Readers) > 0 {
				mark += ": " + strings.Join(t.Readers, "; ")
				if len(mark) > 100 {
					mark = mark[:99] + "…"
				}
			}
		case t.Reason != "":
			mark = "no: " + t.Reason
			if len(mark) > 72 {
				mark = mark[:71] + "…"
			}
		case t.Matrix:
			mark = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", t.Name, t.DType, shapeString(t.Shape), human(t.Bytes), mark)
	}
	tw.Flush()
	tt := info.Totals
	fmt.Fprintf(w, "%d tensors, %s, %s parameters; %d matrices; %d targets (%s parameters)\n",
		tt.Tensors, human(tt.Bytes), count(tt.Params), tt.Matrices, tt.Targets, count(tt.TargetParams))
}

func shapeString(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// count formats a parameter count (1.2K, 6.7B).
func count(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func splitCommand(ctx context.Context) *cli.Command {
	return &cli.Command{
		Name:      "split",
		Usage:     "split a model into a frozen residual and trainable SORSA factors",
		ArgsUsage: "MODEL",
		Description: `Decomposes each targeted weight W (out × in) into its top-r singular triplets
A (r × in), S (r), B (out × r) and the residual W_r = W − scale·B·diag(S)·A,
computed in float64 and rounded once to the weight's own type.

Writes into OUT:
  residual.safetensors          every tensor of MODEL, targeted weights holding W_r
                                (residual/ with the same shards, index and config for a folder)
  adapter/adapter_model.safetensors   <module>.sorsa_A, .sorsa_S, .sorsa_B (float32)
  adapter/adapter_init.safetensors    the same factors, kept for LoRA conversion
  adapter/adapter_config.json   rank, scale, targets, SVD settings, sha256 of every file
  peft/                         with --peft: a PEFT LoRA adapter of the same subspace

--svd auto uses the full SVD when min(out, in) ≤ 512 and the randomized one
(Halko–Martinsson–Tropp, --niter power iterations, --oversample extra columns)
above; --svd exact is a restarted block Lanczos that converges the top-r
singular values to --tol (default 1e-6) at about twice the randomized time.
Outputs appear only when complete.

Examples:
  sorsa-convert split model.safetensors -r 128 -o out/
  sorsa-convert split ./Llama-2-7b-hf -r 128 -t llama --peft -o out/
  sorsa-convert split model-f16.gguf -r 64 --residual-type q4_k -o out/
  sorsa-convert split model.safetensors -r 16 -t 'layers\.0\..*proj' --svd full -o out/
  sorsa-convert split model.safetensors -r 128 --svd exact --tol 1e-6 -o out/`,
		Flags: append(outputFlags(),
			&cli.IntFlag{Name: "rank", Aliases: []string{"r"}, Usage: "number of principal singular triplets per weight", Required: true},
			targetFlag(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output folder", Required: true},
			&cli.StringFlag{Name: "svd", Value: "auto", Usage: "auto, full, randomized or exact"},
			&cli.Float64Flag{Name: "tol", Value: surgery.DefaultTol, Usage: "relative accuracy of the top-r singular values for --svd exact"},
			&cli.IntFlag{Name: "niter", Value: surgery.DefaultNIter, Usage: "power iterations of the randomized SVD"},
			&cli.IntFlag{Name: "oversample", Value: surgery.DefaultOversample, Usage: "extra sketch columns of the randomized SVD"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "seed of the randomized SVD (equal seeds give identical factors)"},
			&cli.Float64Flag{Name: "alpha", Usage: "scale the principal part by alpha/r (default: scale 1, as SORSA)"},
			&cli.BoolFlag{Name: "peft", Usage: "also write OUT/peft, a PEFT LoRA adapter of the same principal subspace"},
			&cli.BoolFlag{Name: "no-initial", Usage: "do not keep adapter_init.safetensors"},
			&cli.StringFlag{Name: "residual-type", Value: "keep", Usage: "stored type of residual weights: keep (each weight's own), or f32, f16, bf16 (any format), " + strings.Join(adapter.GGUFQuantizedTypes(), ", ") + " (GGUF: QPiSSA-style requantization)"},
			&cli.BoolFlag{Name: "regularizer-output", Usage: "ONNX: add an output sorsa_orthonormal_loss (the SORSA regularizer) to augmented.onnx"},
			&cli.BoolFlag{Name: "allow-nonfinite", Usage: "pass weights holding NaN/Inf through untouched (zero factors) instead of refusing"},
			&cli.IntFlag{Name: "threads", Usage: "use at most `N` cores (default: all)"},
			bufferedIOFlag(),
		),
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 1, "MODEL"); err != nil {
				return err
			}
			method, err := surgery.ParseMethod(c.String("svd"))
			if err != nil {
				return err
			}
			pats, err := adapter.CompilePatterns(c.StringSlice("target"))
			if err != nil {
				return err
			}
			if c.Int("niter") < 0 || c.Int("oversample") < 0 {
				return fmt.Errorf("--niter and --oversample must not be negative")
			}
			niter, over := c.Int("niter"), c.Int("oversample")
			if niter == 0 {
				niter = -1 // surgery reads 0 as "default", -1 as "none"
			}
			if over == 0 {
				over = -1
			}
			nthreads, err := threads(c)
			if err != nil {
				return err
			}
			opts := adapter.SplitOptions{
				Rank:              c.Int("rank"),
				SVD:               surgery.Options{Method: method, NIter: niter, Oversample: over, Seed: c.Uint64("seed")},
				Targets:           pats,
				Threads:           nthreads,
				BufferedIO:        c.Bool("buffered-io"),
				PEFT:              c.Bool("peft"),
				NoInitial:         c.Bool("no-initial"),
				AllowNonFinite:    c.Bool("allow-nonfinite"),
				ResidualType:      c.String("residual-type"),
				RegularizerOutput: c.Bool("regularizer-output"),
				Progress:          progress(c, "split"),
			}
			if c.IsSet("alpha") {
				a := c.Float64("alpha")
				if a == 0 {
					return fmt.Errorf("--alpha must not be 0")
				}
				opts.Alpha = &a
			}
			rep, err := adapter.Split(ctx, c.Args().First(), c.String("out"), opts)
			if err != nil {
				return fail(ctx, err)
			}
			if wantJSON(c) {
				return printJSON(c.App.Writer, rep)
			}
			printSplit(c.App.Writer, rep)
			return nil
		},
	}
}

func printSplit(w io.Writer, rep *adapter.SplitReport) {
	fmt.Fprintf(w, "split %s (%s): rank %d, scale %g, SVD %s (niter %d, oversample %d, seed %d)\n",
		rep.Input, rep.Format, rep.Rank, rep.Scale, rep.SVD.Algorithm, rep.SVD.NIter, rep.SVD.Oversample, rep.SVD.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tdtype\tout×in\tsvd\tσ1\tσr\tenergy\ttime")
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%d×%d\t%s\t%.4g\t%.4g\t%.1f%%\t%.2fs\n", t.Tensor, t.DType, t.Out, t.In, t.Method, t.SMax, t.SMin, 100*t.Energy, t.Seconds)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d weights split in %.2fs\nresidual: %s\nadapter:  %s\n", len(rep.Targets), rep.Seconds, rep.Residual, rep.Adapter)
}

func mergeCommand(ctx context.Context) *cli.Command {
	return &cli.Command{
		Name:      "merge",
		Usage:     "fold an adapter into a residual model: W = W_r + scale·B·diag(S)·A",
		ArgsUsage: "RESIDUAL ADAPTER | AUGMENTED.onnx",
		Description: `RESIDUAL is the residual written by split (a file or a checkpoint folder), or
any model. ADAPTER is a sorsa-convert adapter folder, a PEFT LoRA folder
(then W = W_r + (lora_alpha/r)·B·A) or a llama.cpp LoRA adapter .gguf (what
llama-export-lora does, with the output type of your choice). For ONNX, a
single argument AUGMENTED.onnx (the graph split wrote, after training) is
folded back: the original nodes, inputs and outputs, with the trained
factors merged into the weights. Each merged weight is computed in float64 and
rounded once to the residual's type (or --dtype); every other tensor is
copied byte for byte. The adapter's recorded residual checksum must match
unless --force.

Examples:
  sorsa-convert merge out/residual.safetensors out/adapter -o merged.safetensors
  sorsa-convert merge out/residual/ trained-peft/ -o merged/ --dtype bf16
  sorsa-convert merge base.gguf my-lora.gguf -o merged.gguf --outtype q8_0
  sorsa-convert merge trained-augmented.onnx -o merged.onnx`,
		Flags: append(outputFlags(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output file (folder for a checkpoint folder)", Required: true},
			&cli.StringFlag{Name: "dtype", Aliases: []string{"outtype"}, Value: "keep", Usage: "type of the merged weights: keep (the residual's), f32, f16, bf16; for GGUF also " + strings.Join(adapter.GGUFQuantizedTypes(), ", ")},
			&cli.BoolFlag{Name: "force", Usage: "merge even if the residual is not the one the adapter was split with"},
			&cli.IntFlag{Name: "threads", Usage: "use at most `N` cores (default: all)"},
			bufferedIOFlag(),
			&cli.StringFlag{Name: "input-io", Value: adapter.InputAuto, Usage: "how the residual is read: auto (direct I/O when most of it is not in the page cache), direct (bypassing the page cache: less CPU time and faster reads beside the writes on a cold model), cached (through the page cache)"},
		),
		Action: func(c *cli.Context) error {
			var rep *adapter.MergeReport
			nthreads, err := threads(c)
			if err != nil {
				return err
			}
			switch c.NArg() {
			case 1: // a trained augmented ONNX graph holds its own factors
				rep, err = adapter.FoldAugmented(ctx, c.Args().Get(0), c.String("out"))
			case 2:
				rep, err = adapter.Merge(ctx, c.Args().Get(0), c.Args().Get(1), c.String("out"), adapter.MergeOptions{
					DType: c.String("dtype"), Force: c.Bool("force"), Threads: nthreads, BufferedIO: c.Bool("buffered-io"), InputIO: c.String("input-io"), Progress: progress(c, "merge"),
				})
			default:
				return wantArgs(c, 2, "RESIDUAL ADAPTER (or one AUGMENTED.onnx)")
			}
			if err != nil {
				return fail(ctx, err)
			}
			if wantJSON(c) {
				return printJSON(c.App.Writer, rep)
			}
			fmt.Fprintf(c.App.Writer, "merged %d weights (%s), copied %d tensors unchanged, in %.2fs\noutput: %s\n",
				len(rep.Merged), rep.Kind, rep.Copied, rep.Seconds, rep.Output)
			return nil
		},
	}
}

func verifyCommand(ctx context.Context) *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a split: reconstruction error, orthonormality, file checksums",
		ArgsUsage: "ORIGINAL RESIDUAL ADAPTER",
		Description: `For every adapted weight, compares W_r + scale·B·diag(S)·A with the original W:
max absolute and relative error, relative Frobenius error, and the error in
units of half an ulp of the residual's type (≤ 1: exact up to the residual's
one rounding). Also measures ‖A·Aᵀ − I‖_F and ‖Bᵀ·B − I‖_F and checks the
sha256 of the original and residual files against the adapter config.
Exits 1 when a check fails.

Examples:
  sorsa-convert verify model.safetensors out/residual.safetensors out/adapter
  sorsa-convert verify model.safetensors out/residual.safetensors trained/ --rel-tol 0.05 --json`,
		Flags: append(outputFlags(),
			&cli.Float64Flag{Name: "orth-tol", Value: 1e-4, Usage: "largest accepted orthonormality error"},
			&cli.Float64Flag{Name: "rel-tol", Usage: "accept a relative Frobenius error up to this instead of the rounding bound"},
			&cli.IntFlag{Name: "threads", Usage: "use at most `N` cores (default: all)"},
		),
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 3, "ORIGINAL RESIDUAL ADAPTER"); err != nil {
				return err
			}
			nthreads, err := threads(c)
			if err != nil {
				return err
			}
			rep, err := adapter.Verify(ctx, c.Args().Get(0), c.Args().Get(1), c.Args().Get(2), adapter.VerifyOptions{
				OrthTol: c.Float64("orth-tol"), RelTol: c.Float64("rel-tol"), Threads: nthreads,
			})
			if err != nil {
				return fail(ctx, err)
			}
			if wantJSON(c) {
				if err := printJSON(c.App.Writer, rep); err != nil {
					return err
				}
			} else {
				printVerify(c.App.Writer, rep)
			}
			if !rep.OK {
				return fail(ctx, errCheckFailed)
			}
			return nil
		},
	}
}

func printVerify(w io.Writer, rep *adapter.VerifyReport) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tmax abs\tmax rel\tfro rel\t/½ulp\t‖AAᵀ−I‖\t‖BᵀB−I‖\tok")
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "%s\t%.3g\t%.3g\t%.3g\t%.3g\t%.2g\t%.2g\t%v\n", t.Tensor, t.MaxAbs, t.MaxRel, t.FroRel, t.RoundingRatio, t.OrthA, t.OrthB, t.OK)
	}
	tw.Flush()
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "problem:", p)
	}
	if rep.OK {
		fmt.Fprintf(w, "OK: %d weights reconstruct within the residual's rounding; files match the adapter\n", len(rep.Targets))
	} else {
		fmt.Fprintln(w, "FAILED")
	}
}
