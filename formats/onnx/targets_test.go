package onnx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

const batch = 2

// linearsModel is a hand-made graph with every way a weight reaches a
// MatMul or Gemm that Targets knows, plus weights it must refuse. The input
// X is [2, 16].
func linearsModel() *Model {
	const in = 16
	boolTrue := &pb.TensorProto{Name: proto.String("cond"), DataType: proto.Int32(int32(pb.TensorProto_BOOL)), RawData: []byte{1}}
	thenG := &pb.GraphProto{
		Name:   proto.String("then"),
		Node:   []*pb.NodeProto{node("MatMul", "then_mm", []string{"X", "W_outer"}, []string{"y_then"})},
		Output: []*pb.ValueInfoProto{valueInfo("y_then", typeFloat, batch, 12)},
	}
	elseG := &pb.GraphProto{
		Name:        proto.String("else"),
		Initializer: []*pb.TensorProto{f32Init("W_inner", []int64{in, 12}, randValues(9, in*12))},
		Node:        []*pb.NodeProto{node("MatMul", "else_mm", []string{"X", "W_inner"}, []string{"y_else"})},
		Output:      []*pb.ValueInfoProto{valueInfo("y_else", typeFloat, batch, 12)},
	}
	g := &pb.GraphProto{
		Name: proto.String("linears"),
		Initializer: []*pb.TensorProto{
			f32Init("W_mm", []int64{in, 24}, randValues(1, in*24)),
			f32Init("W_g", []int64{20, in}, randValues(2, 20*in)),
			f32Init("b_g", []int64{20}, randValues(3, 20)),
			f32Init("W_g0", []int64{in, 18}, randValues(4, in*18)),
			f32Init("W_t", []int64{22, in}, randValues(5, 22*in)),
			f32Init("W_shared", []int64{in, in}, randValues(6, in*in)),
			f32Init("W_small", []int64{in, 8}, randValues(7, in*8)),
			f32Init("W_outer", []int64{in, 12}, randValues(8, in*12)),
			f32Init("W_3d", []int64{1, 4, in}, randValues(10, 4*in)),
			boolTrue,
		},
		Node: []*pb.NodeProto{
			node("MatMul", "mm", []string{"X", "W_mm"}, []string{"Y1"}),
			node("Gemm", "gemm", []string{"X", "W_g", "b_g"}, []string{"Y2"}, attrI("transB", 1), attrF("alpha", 0.5)),
			node("Gemm", "gemm0", []string{"X", "W_g0"}, []string{"Y3"}),
			node("Transpose", "tr", []string{"W_t"}, []string{"W_t_T"}, attrInts("perm", 1, 0)),
			node("Identity", "id", []string{"W_t_T"}, []string{"W_t_T2"}),
			node("MatMul", "mm_t", []string{"X", "W_t_T2"}, []string{"Y4"}),
			node("Constant", "const_w", nil, []string{"W_c"}, attrT("value", floatTensor("", typeFloat, []int64{in, 17}, randValues(11, in*17), Typed))),
			node("MatMul", "mm_c", []string{"X", "W_c"}, []string{"Y5"}),
			node("MatMul", "mm_shared", []string{"X", "W_shared"}, []string{"Y6"}),
			node("Add", "add_shared", []string{"W_shared", "W_shared"}, []string{"Y7"}),
			node("MatMul", "mm_small", []string{"X", "W_small"}, []string{"Y9"}),
			node("If", "if", []string{"cond"}, []string{"Y8"}, attrG("then_branch", thenG), attrG("else_branch", elseG)),
			node("Mul", "mul3d", []string{"W_3d", "W_3d"}, []string{"Y10"}),
		},
		Input: []*pb.ValueInfoProto{valueInfo("X", typeFloat, batch, in)},
		Output: []*pb.ValueInfoProto{
			valueInfo("Y1", typeFloat, batch, 24), valueInfo("Y2", typeFloat, batch, 20),
			valueInfo("Y3", typeFloat, batch, 18), valueInfo("Y4", typeFloat, batch, 22),
			valueInfo("Y5", typeFloat, batch, 17), valueInfo("Y6", typeFloat, batch, in),
			valueInfo("Y7", typeFloat, in, in), valueInfo("Y8", typeFloat, batch, 12),
			valueInfo("Y9", typeFloat, batch, 8), valueInfo("Y10", typeFloat, 1, 4, in),
		},
	}
	return newModel(g, 13)
}

func TestTargets(t *testing.T) {
	ts, err := Targets(linearsModel())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Target{}
	for _, tg := range ts {
		byName[tg.Name] = tg
	}
	tests := []struct {
		name                string
		out, in             int
		transposed, ok, def bool
		storage             Storage
		graph, reason, note string
		consumerGraph, via  string
	}{
		{name: "W_mm", out: 24, in: 16, transposed: true, ok: true, def: true, graph: "graph"},
		{name: "W_g", out: 20, in: 16, ok: true, def: true, graph: "graph", note: "alpha 0.5"},
		{name: "W_g0", out: 18, in: 16, transposed: true, ok: true, def: true, graph: "graph"},
		{name: "W_t", out: 22, in: 16, ok: true, def: true, graph: "graph", via: "tr,id"},
		{name: "W_c", out: 17, in: 16, transposed: true, ok: true, def: true, storage: ConstantNode, graph: "graph"},
		{name: "W_shared", out: 16, in: 16, transposed: true, graph: "graph", reason: "add_shared"},
		{name: "W_small", out: 8, in: 16, transposed: true, ok: true, graph: "graph"},
		{name: "W_outer", out: 12, in: 16, transposed: true, ok: true, graph: "graph", consumerGraph: "graph/if.then_branch"},
		{name: "W_inner", out: 12, in: 16, transposed: true, ok: true, graph: "graph/if.else_branch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg, ok := byName[tc.name]
			if !ok {
				t.Fatalf("not listed")
			}
			if tg.Out != tc.out || tg.In != tc.in || tg.Transposed != tc.transposed {
				t.Errorf("out×in %d×%d transposed %v, want %d×%d %v", tg.Out, tg.In, tg.Transposed, tc.out, tc.in, tc.transposed)
			}
			if tg.Targetable != tc.ok || tg.Default != tc.def {
				t.Errorf("targetable %v default %v (%s), want %v %v", tg.Targetable, tg.Default, tg.Reason, tc.ok, tc.def)
			}
			if tg.Storage != tc.storage || tg.Graph != tc.graph {
				t.Errorf("storage %v graph %q, want %v %q", tg.Storage, tg.Graph, tc.storage, tc.graph)
			}
			if tc.reason != "" && !strings.Contains(tg.Reason, tc.reason) {
				t.Errorf("reason %q, want it to mention %q", tg.Reason, tc.reason)
			}
			if tc.note != "" && !strings.Contains(strings.Join(tg.Notes, ";"), tc.note) {
				t.Errorf("notes %q, want %q", tg.Notes, tc.note)
			}
			if tc.consumerGraph != "" && tg.Consumers[0].Graph != tc.consumerGraph {
				t.Errorf("consumer graph %q, want %q", tg.Consumers[0].Graph, tc.consumerGraph)
			}
			if tc.via != "" && strings.Join(tg.Consumers[0].Via, ",") != tc.via {
				t.Errorf("via %v, want %s", tg.Consumers[0].Via, tc.via)
			}
		})
	}
	for _, absent := range []string{"b_g", "W_3d", "cond"} {
		if _, ok := byName[absent]; ok {
			t.Errorf("%s listed, but it is no 2-D float weight read by MatMul/Gemm", absent)
		}
	}
	if byName["W_c"].Node != "const_w" {
		t.Errorf("W_c node %q", byName["W_c"].Node)
	}
}

func TestTargetsRefusals(t *testing.T) {
	in := valueInfo("X", typeFloat, 2, 16)
	tests := []struct {
		name   string
		nodes  []*pb.NodeProto
		inits  []*pb.TensorProto
		outs   []*pb.ValueInfoProto
		reason string
	}{
		{"both orientations", []*pb.NodeProto{
			node("MatMul", "a", []string{"X", "W"}, []string{"y1"}),
			node("Transpose", "t", []string{"W"}, []string{"Wt"}),
			node("MatMul", "b", []string{"Y", "Wt"}, []string{"y2"}),
		}, []*pb.TensorProto{f32Init("W", []int64{16, 16}, randValues(1, 256))}, nil, "both orientations"},
		{"graph output", []*pb.NodeProto{node("MatMul", "a", []string{"X", "W"}, []string{"y1"})},
			[]*pb.TensorProto{f32Init("W", []int64{16, 16}, randValues(1, 256))},
			[]*pb.ValueInfoProto{valueInfo("W", typeFloat, 16, 16)}, "graph output"},
		{"A input", []*pb.NodeProto{node("MatMul", "a", []string{"W", "X"}, []string{"y1"}), node("MatMul", "b", []string{"X", "W"}, []string{"y2"})},
			[]*pb.TensorProto{f32Init("W", []int64{16, 16}, randValues(1, 256))}, nil, "MatMul input 0"},
		{"other perm", []*pb.NodeProto{node("Transpose", "t", []string{"W"}, []string{"Wt"}, attrInts("perm", 0, 1)), node("MatMul", "b", []string{"X", "W"}, []string{"y2"})},
			[]*pb.TensorProto{f32Init("W", []int64{16, 16}, randValues(1, 256))}, nil, "permutation"},
		{"int weight", []*pb.NodeProto{node("MatMul", "a", []string{"X", "W"}, []string{"y1"})},
			[]*pb.TensorProto{int64Init("W", 1, 2)}, nil, "not float"},
		{"3-D weight", []*pb.NodeProto{node("MatMul", "a", []string{"X", "W"}, []string{"y1"})},
			[]*pb.TensorProto{f32Init("W", []int64{2, 16, 16}, randValues(1, 512))}, nil, "not 2-D"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(&pb.GraphProto{Node: tc.nodes, Initializer: tc.inits, Input: []*pb.ValueInfoProto{in}, Output: tc.outs}, 13)
			ts, err := Targets(m)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts) != 1 || ts[0].Name != "W" {
				t.Fatalf("targets %+v, want W only", ts)
			}
			if ts[0].Targetable || !strings.Contains(ts[0].Reason, tc.reason) {
				t.Errorf("targetable %v reason %q, want refused for %q", ts[0].Targetable, ts[0].Reason, tc.reason)
			}
			if err := m.ReplaceWeight("W", make([]float64, ts[0].Out*ts[0].In)); !errors.Is(err, ErrNotTarget) {
				t.Errorf("ReplaceWeight: %v, want ErrNotTarget", err)
			}
		})
	}
}

func TestCycle(t *testing.T) {
	m := newModel(&pb.GraphProto{
		Node: []*pb.NodeProto{
			node("Add", "a", []string{"X", "c"}, []string{"b"}),
			node("Relu", "r", []string{"b"}, []string{"c"}),
			node("MatMul", "mm", []string{"c", "W"}, []string{"Y"}),
		},
		Initializer: []*pb.TensorProto{f32Init("W", []int64{16, 16}, randValues(1, 256))},
		Input:       []*pb.ValueInfoProto{valueInfo("X", typeFloat, 2, 16)},
	}, 13)
	_, err := Targets(m)
	var fe *FormatError
	if !errors.As(err, &fe) || !errors.Is(err, ErrCycle) {
		t.Fatalf("Targets: %v, want a FormatError with ErrCycle", err)
	}
	// A cycle through a subgraph's read of an outer value.
	sub := &pb.GraphProto{Node: []*pb.NodeProto{node("Identity", "i", []string{"late"}, []string{"o"})}, Output: []*pb.ValueInfoProto{valueInfo("o", typeFloat)}}
	m = newModel(&pb.GraphProto{
		Node: []*pb.NodeProto{
			node("If", "if", []string{"cond"}, []string{"early"}, attrG("then_branch", sub), attrG("else_branch", sub)),
			node("Relu", "r", []string{"early"}, []string{"late"}),
		},
		Input: []*pb.ValueInfoProto{valueInfo("cond", int32(pb.TensorProto_BOOL))},
	}, 13)
	if err := Validate(m); !errors.Is(err, ErrCycle) {
		t.Fatalf("Validate: %v, want ErrCycle", err)
	}
	// Two producers of one value.
	m = newModel(&pb.GraphProto{Node: []*pb.NodeProto{
		node("Relu", "r1", []string{"X"}, []string{"y"}), node("Relu", "r2", []string{"X"}, []string{"y"}),
	}}, 13)
	if err := Validate(m); err == nil || !strings.Contains(err.Error(), "produced by") {
		t.Fatalf("Validate: %v, want a duplicate producer error", err)
	}
}

// Weight returns the canonical matrix, ReplaceWeight writes one back in the
// stored orientation, and a real runtime (ONNX Runtime) agrees: its outputs
// equal x·Wᵀ computed here from the canonical weights, before and after the
// weights are replaced.
func TestLinearsORT(t *testing.T) {
	ort := newORT(t)
	m := linearsModel()
	dir := t.TempDir()
	x := randFloat32s(42, batch*16)
	type check struct {
		out, weight string
		alpha       float64
		bias        string
	}
	checks := []check{{"Y1", "W_mm", 1, ""}, {"Y2", "W_g", 0.5, "b_g"}, {"Y3", "W_g0", 1, ""},
		{"Y4", "W_t", 1, ""}, {"Y5", "W_c", 1, ""}, {"Y8", "W_outer", 1, ""}, {"Y9", "W_small", 1, ""}}
	verify := func(path string) {
		t.Helper()
		res := ort.run(t, []ortJob{{Model: path, Inputs: map[string]ortTensor{"X": float32Tensor([]int64{batch, 16}, x)}}})[0]
		if res.Error != "" {
			t.Fatal(res.Error)
		}
		mm, err := ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range checks {
			tg, w, err := mm.Weight(c.weight)
			if err != nil {
				t.Fatal(err)
			}
			w64 := make([]float64, len(w))
			for i, v := range w {
				w64[i] = float64(v)
			}
			want := matmulT(x, batch, tg.In, w64, tg.Out, c.alpha)
			if c.bias != "" {
				b, _ := mm.Float64s(mm.Proto.Graph.Initializer[2])
				for i := range want {
					want[i] += b[i%tg.Out]
				}
			}
			if d := maxAbsDiff(res.Outputs[c.out].float32s(t), want); d > 1e-5 {
				t.Errorf("%s: %s differs from x·Wᵀ by %g", path, c.out, d)
			}
		}
	}
	p := filepath.Join(dir, "linears.onnx")
	if err := WriteFile(p, m, nil); err != nil {
		t.Fatal(err)
	}
	verify(p)
	for i, c := range checks {
		tg, err := m.Target(c.weight)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.ReplaceWeight(c.weight, randValues(uint64(100+i), tg.Out*tg.In)); err != nil {
			t.Fatal(err)
		}
		if got := PlaceOf(tg.tensor); got != tg.Place {
			t.Errorf("%s moved from %v to %v", c.weight, tg.Place, got)
		}
	}
	p2 := filepath.Join(dir, "replaced.onnx")
	if err := WriteFile(p2, m, nil); err != nil {
		t.Fatal(err)
	}
	verify(p2)
	// The replaced values are the ones asked for, rounded once to float32.
	for i, c := range checks {
		_, w, _ := m.Weight(c.weight)
		want := randValues(uint64(100+i), len(w))
		for j := range w {
			if w[j] != float32(want[j]) {
				t.Fatalf("%s[%d] = %g, want %g", c.weight, j, w[j], float32(want[j]))
			}
		}
	}
	_ = os.Remove(p)
}
