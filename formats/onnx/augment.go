package onnx

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/sorsa-convert/sorsa-convert/formats/dtype"
	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// Factors are one weight's SORSA factors in SORSA's layout (row-major):
// W = W_r + Scale·B·diag(S)·A with W out × in.
type Factors struct {
	A     []float32 // r × in
	S     []float32 // r
	B     []float32 // out × r
	Scale float64   // c; 0 means 1
}

// Rank returns r.
func (f Factors) Rank() int { return len(f.S) }

func (f Factors) scale() float64 {
	if f.Scale == 0 {
		return 1
	}
	return f.Scale
}

// LossOutput is the graph output Augment adds for the orthonormal
// regularizer: the mean over all A and B of ‖A·Aᵀ − I‖_F and ‖Bᵀ·B − I‖_F.
const LossOutput = "sorsa_orthonormal_loss"

// metaKey is the metadata_props entry through which an augmented model
// remembers, per module, the weight it adapts and the scale c.
const metaKey = "sorsa.adapter"

type adapterMeta struct {
	Weight string  `json:"weight"`
	Scale  float64 `json:"scale"`
}

// branchPrefix starts the name of every node Augment adds.
const branchPrefix = "sorsa/"

// baseSuffix marks a consumer output Augment renamed so that the sum of the
// consumer and its branch can take the original name.
const baseSuffix = ".sorsa_base"

// Augment returns the training graph of residual model m: every weight named
// in factors (by weight name) gets a low-rank branch added to the output of
// each MatMul or Gemm that reads it,
//
//	y = X·W_rᵀ + Scale·((X·Aᵀ) ⊙ S)·Bᵀ     (Gemm: times alpha, on op(X))
//
// whose trainable initializers <module>.sorsa_A (r × in), .sorsa_S (r) and
// .sorsa_B (out × r) hold the factors exactly in SORSA's layout, in the
// weight's element type, in the main graph (Transpose nodes give MatMul the
// orientation it needs). With regularizer, the graph also outputs
// LossOutput (a FLOAT scalar). Only ops of the default domain available
// since opset 7 are used; the model's opset is not changed. m is not
// modified.
func Augment(m *Model, factors map[string]Factors, regularizer bool) (*Model, error) {
	if opset := defaultOpset(m.Proto); opset < 7 {
		return nil, fmt.Errorf("onnx: augment needs opset 7 or later (broadcasting Mul), the model imports %d", opset)
	}
	out, err := m.clone()
	if err != nil {
		return nil, err
	}
	ts, err := Targets(out)
	if err != nil {
		return nil, err
	}
	b := &builder{names: allNames(out.Proto), main: out.Proto.Graph}
	meta := map[string]adapterMeta{}
	weights := make([]string, 0, len(factors))
	for w := range factors {
		weights = append(weights, w)
	}
	sort.Strings(weights)
	var losses []string
	for _, w := range weights {
		f := factors[w]
		tg, err := findTarget(ts, w)
		if err != nil {
			return nil, err
		}
		if err := checkFactors(tg, f); err != nil {
			return nil, err
		}
		mod := tg.Module()
		if _, dup := meta[mod]; dup {
			return nil, fmt.Errorf("onnx: weights %q and %q share the module name %q", meta[mod].Weight, w, mod)
		}
		meta[mod] = adapterMeta{Weight: w, Scale: f.scale()}
		if err := b.branches(tg, f); err != nil {
			return nil, err
		}
		if regularizer {
			aName, bName := mod+".sorsa_A", mod+".sorsa_B"
			losses = append(losses,
				b.orthoNorm(aName, aName+"_T", f.Rank(), tg.DType, mod+"/A"), // A·Aᵀ
				b.orthoNorm(bName+"_T", bName, f.Rank(), tg.DType, mod+"/B")) // Bᵀ·B
		}
	}
	if b.err != nil {
		return nil, b.err
	}
	g := out.Proto.Graph
	g.Node = append(b.front, g.Node...)
	if regularizer && len(losses) > 0 {
		b.loss(losses)
		if b.err != nil {
			return nil, b.err
		}
		g.Node = append(g.Node, b.back...)
		g.Output = append(g.Output, &pb.ValueInfoProto{Name: proto.String(LossOutput), Type: &pb.TypeProto{
			Value: &pb.TypeProto_TensorType{TensorType: &pb.TypeProto_Tensor{ElemType: proto.Int32(typeFloat), Shape: &pb.TensorShapeProto{}}}}})
	}
	js, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	out.Proto.MetadataProps = append(out.Proto.MetadataProps, &pb.StringStringEntryProto{Key: proto.String(metaKey), Value: proto.String(string(js))})
	return out, nil
}

func checkFactors(tg Target, f Factors) error {
	if !tg.Targetable {
		return fmt.Errorf("onnx: %q: %w: %s", tg.Name, ErrNotTarget, tg.Reason)
	}
	r := f.Rank()
	if r < 1 || len(f.A) != r*tg.In || len(f.B) != tg.Out*r {
		return fmt.Errorf("onnx: %q: factors A %d, S %d, B %d values do not fit a %d×%d weight",
			tg.Name, len(f.A), len(f.S), len(f.B), tg.Out, tg.In)
	}
	return nil
}

// defaultOpset returns the model's ai.onnx opset version.
func defaultOpset(m *pb.ModelProto) int64 {
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// allNames collects every value, node and initializer name of every graph,
// to keep added names unique.
func allNames(m *pb.ModelProto) map[string]bool {
	names := map[string]bool{}
	walkGraphs(m, func(sc *scope) error {
		for _, v := range sc.g.GetInput() {
			names[v.GetName()] = true
		}
		for _, v := range sc.g.GetOutput() {
			names[v.GetName()] = true
		}
		for _, t := range sc.g.GetInitializer() {
			names[t.GetName()] = true
		}
		for _, n := range sc.g.GetNode() {
			names[n.GetName()] = true
			for _, o := range n.GetOutput() {
				names[o] = true
			}
		}
		return nil
	})
	return names
}

// builder adds the nodes and initializers of the adapter branches.
type builder struct {
	names map[string]bool
	main  *pb.GraphProto
	front []*pb.NodeProto // constant work (factor transposes) run first
	back  []*pb.NodeProto // the regularizer, run last
	eyes  map[string]string
	err   error
}

// fresh claims a new name, failing if the model already uses it.
func (b *builder) fresh(name string) string {
	if b.names[name] && b.err == nil {
		b.err = fmt.Errorf("onnx: the model already has a value or node named %q", name)
	}
	b.names[name] = true
	return name
}

func (b *builder) node(list *[]*pb.NodeProto, op, name string, in []string, outName string, attrs ...*pb.AttributeProto) string {
	*list = append(*list, &pb.NodeProto{OpType: proto.String(op), Name: proto.String(b.fresh(branchPrefix + name)),
		Input: in, Output: []string{b.fresh(outName)}, Attribute: attrs})
	return outName
}

func (b *builder) initializer(name string, dt int32, dims []int64, v []float64) {
	b.main.Initializer = append(b.main.Initializer, floatInit(b.fresh(name), dt, dims, v))
}

// floatInit is a raw_data tensor of a float type, each value rounded once.
func floatInit(name string, dt int32, dims []int64, v []float64) *pb.TensorProto {
	k, _ := floatKind(dt)
	raw := make([]byte, len(v)*k.Size())
	dtype.Encode(k, raw, v)
	return &pb.TensorProto{Name: proto.String(name), DataType: proto.Int32(dt), Dims: dims, RawData: raw}
}

func widen(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func intAttr(name string, v int64) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func tensorAttr(name string, t *pb.TensorProto) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_TENSOR.Enum(), T: t}
}

// branches adds tg's factor initializers and one branch per consumer.
func (b *builder) branches(tg Target, f Factors) error {
	mod, r, dt := tg.Module(), int64(f.Rank()), tg.DType
	aName, sName, bName := mod+".sorsa_A", mod+".sorsa_S", mod+".sorsa_B"
	b.initializer(aName, dt, []int64{r, int64(tg.In)}, widen(f.A))
	b.initializer(sName, dt, []int64{r}, widen(f.S))
	b.initializer(bName, dt, []int64{int64(tg.Out), r}, widen(f.B))
	aT := b.node(&b.front, "Transpose", mod+"/A_T", []string{aName}, aName+"_T", intsAttr("perm", 1, 0))
	bT := b.node(&b.front, "Transpose", mod+"/B_T", []string{bName}, bName+"_T", intsAttr("perm", 1, 0))
	for ci, c := range tg.Consumers {
		g := c.sc.g
		at := -1
		for i, n := range g.GetNode() {
			if n == c.node {
				at = i
			}
		}
		if at < 0 || len(c.node.GetOutput()) == 0 || len(c.node.GetInput()) == 0 {
			return fmt.Errorf("onnx: %q: consumer %s not found", tg.Name, c.Node)
		}
		p := fmt.Sprintf("%s/%d/", mod, ci)
		v := fmt.Sprintf("%s.sorsa/%d/", mod, ci)
		var nodes []*pb.NodeProto
		x := c.node.GetInput()[0]
		scale := f.scale()
		if c.OpType == "Gemm" {
			if a := attr(c.node, "transA"); a != nil && a.GetI() != 0 {
				x = b.node(&nodes, "Transpose", p+"x_T", []string{x}, v+"x_T", intsAttr("perm", 1, 0))
			}
			scale *= float64(c.Alpha)
		}
		xa := b.node(&nodes, "MatMul", p+"xA", []string{x, aT}, v+"xA")
		xas := b.node(&nodes, "Mul", p+"xAS", []string{xa, sName}, v+"xAS")
		br := b.node(&nodes, "MatMul", p+"xASB", []string{xas, bT}, v+"xASB")
		if scale != 1 {
			k := b.node(&nodes, "Constant", p+"scale", nil, v+"scale", tensorAttr("value", floatInit("", dt, nil, []float64{scale})))
			br = b.node(&nodes, "Mul", p+"scaled", []string{br, k}, v+"scaled")
		}
		y := c.node.Output[0]
		c.node.Output[0] = b.fresh(y + baseSuffix)
		nodes = append(nodes, &pb.NodeProto{OpType: proto.String("Add"), Name: proto.String(b.fresh(branchPrefix + p + "add")),
			Input: []string{y + baseSuffix, br}, Output: []string{y}})
		g.Node = append(g.Node[:at+1], append(nodes, g.Node[at+1:]...)...)
	}
	return b.err
}

func intsAttr(name string, v ...int64) *pb.AttributeProto {
	return &pb.AttributeProto{Name: proto.String(name), Type: pb.AttributeProto_INTS.Enum(), Ints: v}
}

// orthoNorm adds nodes computing ‖p·q − I_r‖_F (as FLOAT, p·q being
// r × r) and returns the name of the scalar.
func (b *builder) orthoNorm(p, q string, r int, dt int32, label string) string {
	v := label + ".sorsa_ortho/"
	if dt != typeFloat {
		p = b.node(&b.back, "Cast", label+"/cast_p", []string{p}, v+"p32", intAttr("to", int64(typeFloat)))
		q = b.node(&b.back, "Cast", label+"/cast_q", []string{q}, v+"q32", intAttr("to", int64(typeFloat)))
	}
	eye := b.eye(r)
	pq := b.node(&b.back, "MatMul", label+"/gram", []string{p, q}, v+"gram")
	d := b.node(&b.back, "Sub", label+"/sub", []string{pq, eye}, v+"diff")
	sq := b.node(&b.back, "Mul", label+"/sq", []string{d, d}, v+"sq")
	// No axes: ReduceSum then reduces over every axis, whether the opset
	// takes axes as an attribute (< 13) or as an input (≥ 13).
	s := b.node(&b.back, "ReduceSum", label+"/sum", []string{sq}, v+"sum", intAttr("keepdims", 0))
	return b.node(&b.back, "Sqrt", label+"/norm", []string{s}, v+"norm")
}

// eye returns a FLOAT r × r identity initializer, shared per rank.
func (b *builder) eye(r int) string {
	if b.eyes == nil {
		b.eyes = map[string]string{}
	}
	name := "sorsa_eye_" + strconv.Itoa(r)
	if _, ok := b.eyes[name]; ok {
		return name
	}
	b.eyes[name] = name
	v := make([]float64, r*r)
	for i := 0; i < r; i++ {
		v[i*r+i] = 1
	}
	b.initializer(name, typeFloat, []int64{int64(r), int64(r)}, v)
	return name
}

// loss sums the norms and divides by their count into LossOutput.
func (b *builder) loss(norms []string) {
	sum := norms[0]
	for i, n := range norms[1:] {
		sum = b.node(&b.back, "Add", fmt.Sprintf("loss/add%d", i), []string{sum, n}, fmt.Sprintf("sorsa_loss/sum%d", i))
	}
	b.initializer("sorsa_loss_count", typeFloat, nil, []float64{float64(len(norms))})
	b.node(&b.back, "Div", "loss/mean", []string{sum, "sorsa_loss_count"}, LossOutput)
}

// clone returns a deep copy of m, with its own copies of replaced external
// data.
func (m *Model) clone() (*Model, error) {
	c := &Model{Proto: proto.Clone(m.Proto).(*pb.ModelProto), Dir: m.Dir, File: m.File}
	if len(m.staged) == 0 {
		return c, nil
	}
	var olds, news []*pb.TensorProto
	eachTensor(m.Proto, func(r tensorRef) error { olds = append(olds, r.t); return nil })
	eachTensor(c.Proto, func(r tensorRef) error { news = append(news, r.t); return nil })
	for i, t := range olds {
		if s, ok := m.staged[t]; ok {
			buf, err := m.readExternal(t, s.n)
			if err != nil {
				return nil, err
			}
			if err := c.stageExternal(news[i], buf); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	return c, nil
}
