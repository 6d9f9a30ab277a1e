package surgery

import (
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// python is Debian's interpreter, which has numpy (the python3 first on PATH
// may not).
const python = "/usr/bin/python3"

// numpyOracle runs numpy.linalg.svd on w (float64) and returns all singular
// values and the residual W − U_r·diag(s_r)·V_rᵀ, both computed by numpy.
const numpyOracle = `
import sys, numpy as np
path, rows, cols, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
w = np.fromfile(path, dtype='<f4').astype(np.float64).reshape(rows, cols)
u, s, vt = np.linalg.svd(w, full_matrices=False)
s.astype('<f8').tofile(path + '.s')
(w - (u[:, :r] * s[:r]) @ vt[:r, :]).astype('<f8').tofile(path + '.res')
`

func requireNumpy(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import numpy").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s with numpy is required in CI: %v", python, err)
		}
		t.Skipf("%s with numpy not available: %v", python, err)
	}
}

func readFloat64s(t *testing.T, path string, n int) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 8*n {
		t.Fatalf("%s: %d bytes, want %d", path, len(b), 8*n)
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

// TestAgainstNumpy compares singular values and residuals with numpy's LAPACK
// SVD. The residual does not depend on the sign (or, for distinct singular
// values, the basis) of the triplets, so it is compared element by element.
func TestAgainstNumpy(t *testing.T) {
	requireNumpy(t)
	tests := []struct {
		name string
		w    *Matrix
		opts Options
	}{
		{"gaussian tall full", gaussian(1000, 70, 45), Options{Rank: 12, Method: Full}},
		{"gaussian wide auto", gaussian(1001, 30, 81), Options{Rank: 7}},
		{"decaying randomized", withSpectrum(1002, 160, 120, decaying(120, 10)), Options{Rank: 20, Method: Randomized, Seed: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, n, r := tc.w.Rows, tc.w.Cols, tc.opts.Rank
			path := filepath.Join(t.TempDir(), "w.f32")
			raw := make([]byte, 4*m*n)
			for i, v := range tc.w.Data {
				binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
			}
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(python, "-c", numpyOracle, path,
				strconv.Itoa(m), strconv.Itoa(n), strconv.Itoa(r))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("numpy: %v\n%s", err, out)
			}
			wantS := readFloat64s(t, path+".s", min(m, n))
			wantRes := readFloat64s(t, path+".res", m*n)

			gotS, err := SingularValues(tc.w)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range gotS {
				if math.Abs(s-wantS[i]) > 1e-5*wantS[i] {
					t.Errorf("σ_%d = %.9g, numpy %.9g", i, s, wantS[i])
				}
			}
			f, err := Decompose(tc.w, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range f.S {
				if math.Abs(float64(s)-wantS[i]) > 1e-5*wantS[i] {
					t.Errorf("Decompose σ_%d = %.9g, numpy %.9g", i, s, wantS[i])
				}
			}
			res := make([]float64, m*n)
			Residual(tc.w, f, 1, res)
			// The factors are float32: the principal part carries about
			// 2^-24·σ₁ of rounding per element.
			tol := 1e-6 * wantS[0]
			var worst float64
			for i := range res {
				worst = max(worst, math.Abs(res[i]-wantRes[i]))
			}
			if worst > tol {
				t.Errorf("residual differs from numpy's by up to %g (tolerance %g)", worst, tol)
			}
			t.Logf("max |residual − numpy| = %.3g (σ₁ = %.4g)", worst, wantS[0])
		})
	}
}
