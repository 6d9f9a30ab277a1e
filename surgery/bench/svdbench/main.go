// Command svdbench times surgery.Decompose on a float32 matrix read from a
// raw little-endian file, for surgery/bench/compare.py.
//
//	svdbench -in W.f32 -rows 4096 -cols 4096 -rank 128 -method randomized \
//	    -reps 3 -out DIR
//
// It prints one JSON object per repetition ({"method", "seconds",
// "cpu_seconds"}) and writes the factors of the last one to DIR as raw
// float32 files A.f32 (rank × cols), S.f32 and B.f32 (rows × rank).
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/sorsa-convert/sorsa-convert/surgery"
)

func main() {
	in := flag.String("in", "", "raw little-endian float32 matrix, rows × cols, row-major")
	rows := flag.Int("rows", 0, "rows")
	cols := flag.Int("cols", 0, "columns")
	rank := flag.Int("rank", 128, "rank r")
	method := flag.String("method", "randomized", "auto, full, randomized or exact")
	niter := flag.Int("niter", 0, "power iterations (0: default)")
	oversample := flag.Int("oversample", 0, "oversampling (0: default)")
	tol := flag.Float64("tol", 0, "Exact tolerance (0: default)")
	reps := flag.Int("reps", 1, "repetitions")
	out := flag.String("out", "", "folder for the last repetition's factors (optional)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the repetitions to this file")
	flag.Parse()
	if *profile != "" {
		pf, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "svdbench:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			fmt.Fprintln(os.Stderr, "svdbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*in, *rows, *cols, *rank, *method, *niter, *oversample, *tol, *reps, *out); err != nil {
		fmt.Fprintln(os.Stderr, "svdbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(in string, rows, cols, rank int, method string, niter, oversample int, tol float64, reps int, out string) error {
	meth, err := surgery.ParseMethod(method)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	if rows <= 0 || cols <= 0 || len(raw) != 4*rows*cols {
		return fmt.Errorf("%s: %d bytes, want 4×%d×%d", in, len(raw), rows, cols)
	}
	w := surgery.NewMatrix(rows, cols)
	for i := range w.Data {
		w.Data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	raw = nil
	opts := surgery.Options{Rank: rank, Method: meth, NIter: niter, Oversample: oversample, Tol: tol}
	var f *surgery.Factors
	enc := json.NewEncoder(os.Stdout)
	for range reps {
		c0 := cpuSeconds()
		t0 := time.Now()
		f, err = surgery.Decompose(w, opts)
		if err != nil {
			return err
		}
		wall := time.Since(t0).Seconds()
		if err := enc.Encode(map[string]any{
			"method": method, "seconds": wall, "cpu_seconds": cpuSeconds() - c0,
			"options": opts.Normalize(rows, cols),
		}); err != nil {
			return err
		}
	}
	if out == "" {
		return nil
	}
	for name, data := range map[string][]float32{"A.f32": f.A.Data, "S.f32": f.S, "B.f32": f.B.Data} {
		b := make([]byte, 4*len(data))
		for i, v := range data {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		if err := os.WriteFile(filepath.Join(out, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
