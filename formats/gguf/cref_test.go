package gguf

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCReference compiles ggml's own ggml-quants.c (from the llama.cpp tree
// that setup-ggufpy.sh unpacks) with a C compiler and compares every codec
// with it bit for bit: the only oracle for the K-quant quantizers, which
// gguf-py lacks. The C file is built with -ffp-contract=off, the plain
// float32 semantics the Go codecs follow; a -march=native build on an FMA
// machine contracts some expressions and differs in a few percent of Q4_K
// blocks (measured: 14 of 252), which is why this test pins the flag.

const crefHarness = `
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
typedef void (*qfn)(const float *, void *, int64_t);
typedef void (*dfn)(const void *, float *, int64_t);
#define Q(n) void quantize_row_##n##_ref(const float *, void *, int64_t);
#define D(n) void dequantize_row_##n(const void *, float *, int64_t);
Q(q8_0) Q(q4_0) Q(q4_1) Q(q5_0) Q(q5_1) Q(q2_K) Q(q3_K) Q(q4_K) Q(q5_K) Q(q6_K)
D(q8_0) D(q4_0) D(q4_1) D(q5_0) D(q5_1) D(q2_K) D(q3_K) D(q4_K) D(q5_K) D(q6_K)
static const struct { const char *name; int bs, ts; qfn q; dfn d; } T[] = {
  {"Q8_0", 32, 34, quantize_row_q8_0_ref, dequantize_row_q8_0},
  {"Q4_0", 32, 18, quantize_row_q4_0_ref, dequantize_row_q4_0},
  {"Q4_1", 32, 20, quantize_row_q4_1_ref, dequantize_row_q4_1},
  {"Q5_0", 32, 22, quantize_row_q5_0_ref, dequantize_row_q5_0},
  {"Q5_1", 32, 24, quantize_row_q5_1_ref, dequantize_row_q5_1},
  {"Q2_K", 256, 84, quantize_row_q2_K_ref, dequantize_row_q2_K},
  {"Q3_K", 256, 110, quantize_row_q3_K_ref, dequantize_row_q3_K},
  {"Q4_K", 256, 144, quantize_row_q4_K_ref, dequantize_row_q4_K},
  {"Q5_K", 256, 176, quantize_row_q5_K_ref, dequantize_row_q5_K},
  {"Q6_K", 256, 210, quantize_row_q6_K_ref, dequantize_row_q6_K},
};
static void *slurp(const char *p, long *n) {
  FILE *f = fopen(p, "rb"); if (!f) exit(2);
  fseek(f, 0, SEEK_END); *n = ftell(f); fseek(f, 0, SEEK_SET);
  void *b = malloc(*n + 1); if (fread(b, 1, *n, f) != (size_t)*n) exit(3); fclose(f); return b;
}
static void spit(const char *p, const void *b, long n) {
  FILE *f = fopen(p, "wb"); if (!f || fwrite(b, 1, n, f) != (size_t)n) exit(4); fclose(f);
}
/* usage: cref quant|dequant TYPE IN OUT */
int main(int argc, char **argv) {
  if (argc != 5) return 1;
  for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
    if (strcmp(T[i].name, argv[2])) continue;
    long n; void *in = slurp(argv[3], &n);
    if (!strcmp(argv[1], "quant")) {
      long k = n / 4, out = k / T[i].bs * T[i].ts; void *y = malloc(out);
      T[i].q(in, y, k); spit(argv[4], y, out);
    } else {
      long k = n / T[i].ts * T[i].bs; float *y = malloc(4 * k);
      T[i].d(in, y, k); spit(argv[4], y, 4 * k);
    }
    return 0;
  }
  return 5;
}
`

// The few ggml functions ggml-quants.c refers to outside the row codecs.
const crefStubs = `
#include <stdlib.h>
#include <stddef.h>
void ggml_abort(const char *file, int line, const char *fmt, ...) { abort(); }
size_t ggml_row_size(int type, long ne) { abort(); }
const char *ggml_type_name(int type) { abort(); }
size_t ggml_type_size(int type) { abort(); }
`

func buildCReference(t *testing.T, dir string) string {
	t.Helper()
	ggml := filepath.Join(ggufPyDir(t), "..", "ggml")
	src := filepath.Join(ggml, "src", "ggml-quants.c")
	if _, err := os.Stat(src); err != nil {
		missing(t, "no ggml-quants.c at "+src)
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		missing(t, "no C compiler (cc)")
	}
	for name, text := range map[string]string{"harness.c": crefHarness, "stubs.c": crefStubs} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "cref")
	cmd := exec.Command(cc, "-O2", "-ffp-contract=off", "-DNDEBUG", "-w",
		"-I"+filepath.Join(ggml, "include"), "-I"+filepath.Join(ggml, "src"), "-I"+filepath.Join(ggml, "src", "ggml-cpu"),
		src, filepath.Join(dir, "harness.c"), filepath.Join(dir, "stubs.c"), "-lm", "-o", bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the C reference: %v\n%s", err, out)
	}
	return bin
}

func TestCReference(t *testing.T) {
	dir := t.TempDir()
	bin := buildCReference(t, dir)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("cref %v: %v\n%s", args, err, out)
		}
	}
	rng := rand.New(rand.NewPCG(9, 10))
	x := quantInputs(rng)
	// Heavy-tailed blocks over a wide range of scales; many, since some
	// branches of the K-quant scale searches are taken by few blocks.
	for range 2000 {
		s := math.Exp(rng.NormFloat64() * 3)
		for range 256 {
			v := rng.NormFloat64() * s
			if rng.IntN(50) == 0 {
				v *= 20
			}
			x = append(x, float32(v))
		}
	}
	xin := filepath.Join(dir, "x.f32")
	writeFloats(t, xin, x)

	for _, ty := range []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K} {
		t.Run("quant/"+ty.String(), func(t *testing.T) {
			out := filepath.Join(dir, ty.String()+".q")
			run("quant", ty.String(), xin, out)
			want, _ := os.ReadFile(out)
			n, _ := ty.RowSize(len(x))
			got := make([]byte, n)
			if err := Quantize(ty, got, x); err != nil {
				t.Fatal(err)
			}
			ts, bad := ty.TypeSize(), 0
			for i := 0; i+ts <= len(want) && i+ts <= len(got); i += ts {
				if !bytes.Equal(got[i:i+ts], want[i:i+ts]) {
					if bad < 3 {
						t.Errorf("block %d: got %x, C %x", i/ts, got[i:i+ts], want[i:i+ts])
					}
					bad++
				}
			}
			if bad > 0 || len(got) != len(want) {
				t.Errorf("%d of %d blocks differ (%d vs %d bytes)", bad, len(got)/ts, len(got), len(want))
			} else {
				t.Logf("%d blocks identical", len(got)/ts)
			}
		})
	}
	for _, ty := range []Type{Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K} {
		t.Run("dequant/"+ty.String(), func(t *testing.T) {
			blocks := randomBlocks(rng, ty, 8192/ty.BlockSize())
			in := filepath.Join(dir, ty.String()+".blocks")
			if err := os.WriteFile(in, blocks, 0o644); err != nil {
				t.Fatal(err)
			}
			run("dequant", ty.String(), in, in+".f32")
			want := readFloats(t, in+".f32")
			got := make([]float32, len(blocks)/ty.TypeSize()*ty.BlockSize())
			if err := Dequantize(ty, got, blocks); err != nil {
				t.Fatal(err)
			}
			sameBits(t, fmt.Sprint(ty), got, want)
		})
	}
}
