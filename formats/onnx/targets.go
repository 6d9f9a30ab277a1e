package onnx

import (
	"fmt"
	"strings"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// Storage says how a weight is defined in its graph.
type Storage int

const (
	// Initializer: a TensorProto in the graph's initializer list.
	Initializer Storage = iota
	// ConstantNode: the value attribute of a Constant node.
	ConstantNode
)

// String names the storage.
func (s Storage) String() string {
	if s == ConstantNode {
		return "Constant"
	}
	return "initializer"
}

// DefaultMinDim is the smallest out and in dimension of a weight selected
// by default.
const DefaultMinDim = 16

// Consumer is a MatMul or Gemm node that reads a weight as its B input.
type Consumer struct {
	Node   string // node name (OpType#index when unnamed)
	OpType string // MatMul or Gemm
	Graph  string // path of the graph holding the node
	// Via lists the Identity and Transpose nodes between the weight and
	// the consumer, in order.
	Via []string
	// Alpha is Gemm's alpha (1 for MatMul): it scales the weight's
	// contribution.
	Alpha float32

	node *pb.NodeProto
	sc   *scope
	// transposed: the consumer sees the canonical out × in weight only
	// after a transpose of what it reads.
	transposed bool
}

// Target is a weight used as the B input of MatMul or Gemm nodes, directly
// or through Identity / Transpose(perm [1,0]) nodes, or another 2-D float
// weight (then not targetable).
type Target struct {
	// Name is the weight's value name (the initializer's name, or the
	// Constant node's output).
	Name    string
	Graph   string  // path of the graph defining it: "graph", "graph/If_0.then_branch", ...
	Storage Storage // initializer or Constant node
	Node    string  // the Constant node, for Storage == ConstantNode
	DType   int32   // TensorProto data_type
	Shape   []int64 // stored shape
	Place   Place   // where the elements are kept
	// Out and In are the canonical (PyTorch nn.Linear) dimensions.
	Out, In int
	// Transposed reports a weight stored [in, out]: canonical = storedᵀ.
	Transposed bool
	Consumers  []Consumer
	// Targetable reports whether SORSA may split the weight; Reason says
	// why not when it is false.
	Targetable bool
	Reason     string
	// Default reports whether the weight is selected when the user names no
	// targets: targetable with both dimensions at least DefaultMinDim.
	Default bool
	// Notes lists facts a user should know (Gemm alpha ≠ 1, an initializer
	// that is also an overridable graph input).
	Notes []string

	tensor *pb.TensorProto
}

// Module returns the name SORSA factors of the weight are stored under: the
// weight name without a trailing ".weight".
func (t Target) Module() string { return strings.TrimSuffix(t.Name, ".weight") }

// Targets lists, in graph order (subgraphs included), every weight of m
// read as the B input of MatMul or Gemm nodes and every other 2-D float
// initializer or Constant value, with whether and how SORSA can split it.
// It returns a FormatError for a graph with a cycle.
func Targets(m *Model) ([]Target, error) {
	if err := Validate(m); err != nil {
		return nil, err
	}
	ix := indexGraphs(m.Proto)
	var out []Target
	names := map[string]int{} // weight name → definitions with that name
	for _, sc := range ix.scopes {
		for _, vd := range ix.defs[sc] {
			if vd.kind == defInitializer || vd.kind == defConstant {
				names[vd.name]++
			}
		}
	}
	for _, sc := range ix.scopes {
		var defs []*valueDef
		for _, t := range sc.g.GetInitializer() {
			if vd := ix.defs[sc][t.GetName()]; vd != nil && vd.tensor == t {
				defs = append(defs, vd)
			}
		}
		for _, n := range sc.g.GetNode() {
			if len(n.GetOutput()) > 0 {
				if vd := ix.defs[sc][n.GetOutput()[0]]; vd != nil && vd.kind == defConstant && vd.node == n {
					defs = append(defs, vd)
				}
			}
		}
		for _, vd := range defs {
			if t, ok := ix.target(vd, names[vd.name] > 1); ok {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// target describes vd if some MatMul or Gemm reads it as B.
func (ix *graphIndex) target(vd *valueDef, ambiguous bool) (Target, bool) {
	var consumers []Consumer
	var reasons []string
	ix.follow(vd, false, nil, &consumers, &reasons, 0)
	t := vd.tensor
	if len(consumers) == 0 {
		// Other 2-D float weights are listed too, as not targetable.
		if !IsFloat(t.GetDataType()) || len(t.GetDims()) != 2 {
			return Target{}, false
		}
		if len(reasons) == 0 {
			reasons = []string{"not read by any node"}
		}
		reasons = append([]string{"not read by MatMul or Gemm as B"}, reasons...)
	}
	tg := Target{
		Name: vd.name, Graph: vd.sc.path, DType: t.GetDataType(),
		Shape: append([]int64(nil), t.GetDims()...), Place: PlaceOf(t),
		Consumers: consumers, tensor: t,
	}
	if vd.kind == defConstant {
		tg.Storage, tg.Node = ConstantNode, nodeLabel(vd.node, vd.index)
	}
	if vd.input {
		tg.Notes = append(tg.Notes, "also a graph input: callers may override it")
	}
	for _, c := range consumers {
		if c.Alpha != 1 {
			tg.Notes = append(tg.Notes, fmt.Sprintf("Gemm %s has alpha %g", c.Node, c.Alpha))
		}
	}
	if len(consumers) > 0 {
		tg.Transposed = consumers[0].transposed
	}
	for _, c := range consumers {
		if c.transposed != tg.Transposed {
			reasons = append(reasons, "read in both orientations")
			break
		}
	}
	switch {
	case !IsFloat(t.GetDataType()):
		reasons = append([]string{"element type " + TypeName(t.GetDataType()) + " is not float"}, reasons...)
	case len(t.GetDims()) != 2:
		reasons = append([]string{fmt.Sprintf("not 2-D (shape %v)", t.GetDims())}, reasons...)
	case t.GetDims()[0] == 0 || t.GetDims()[1] == 0:
		reasons = append([]string{"empty"}, reasons...)
	}
	if ambiguous {
		reasons = append(reasons, "name defined in more than one place")
	}
	if len(t.GetDims()) == 2 {
		tg.Out, tg.In = int(t.GetDims()[0]), int(t.GetDims()[1])
		if tg.Transposed {
			tg.Out, tg.In = tg.In, tg.Out
		}
	}
	tg.Targetable = len(reasons) == 0
	tg.Reason = strings.Join(reasons, "; ")
	tg.Default = tg.Targetable && tg.Out >= DefaultMinDim && tg.In >= DefaultMinDim
	return tg, true
}

// maxChain bounds how many Identity/Transpose nodes follow is willing to
// walk through (a guard: Validate already rules out cycles).
const maxChain = 64

// follow walks the readers of vd, through Identity and 2-D Transpose nodes,
// collecting MatMul/Gemm B consumers and the reasons other readers make the
// weight untargetable. flip tells whether an odd number of transposes lies
// between the weight and vd.
func (ix *graphIndex) follow(vd *valueDef, flip bool, via []string, cs *[]Consumer, reasons *[]string, depth int) {
	if depth > maxChain {
		*reasons = append(*reasons, "chain of Identity/Transpose nodes too long")
		return
	}
	for _, u := range ix.uses[vd] {
		if u.node == nil {
			*reasons = append(*reasons, fmt.Sprintf("%s is a graph output of %s", vd.name, u.sc.path))
			continue
		}
		n, label := u.node, nodeLabel(u.node, u.index)
		op := n.GetOpType()
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			op = d + "." + op
		}
		switch {
		case op == "MatMul" && u.k == 1:
			*cs = append(*cs, Consumer{Node: label, OpType: op, Graph: u.sc.path, Via: via, Alpha: 1,
				node: n, sc: u.sc, transposed: !flip})
		case op == "Gemm" && u.k == 1:
			alpha := float32(1)
			if a := attr(n, "alpha"); a != nil {
				alpha = a.GetF()
			}
			transB := false
			if a := attr(n, "transB"); a != nil {
				transB = a.GetI() != 0
			}
			*cs = append(*cs, Consumer{Node: label, OpType: op, Graph: u.sc.path, Via: via, Alpha: alpha,
				node: n, sc: u.sc, transposed: transB == flip})
		case (op == "Identity" || op == "Transpose") && u.k == 0 && len(n.GetOutput()) > 0:
			f := flip
			if op == "Transpose" {
				if !swapsTwoAxes(n) {
					*reasons = append(*reasons, fmt.Sprintf("read by %s with a permutation other than [1,0]", label))
					continue
				}
				f = !f
			}
			next := ix.resolve(u.sc, n.GetOutput()[0])
			if next == nil || next.node != n {
				continue
			}
			ix.follow(next, f, append(append([]string(nil), via...), label), cs, reasons, depth+1)
		default:
			*reasons = append(*reasons, fmt.Sprintf("read by %s (%s input %d)", label, op, u.k))
		}
	}
}

// swapsTwoAxes reports a Transpose that swaps the two axes of a 2-D input:
// perm [1,0], or no perm (which reverses the axes).
func swapsTwoAxes(n *pb.NodeProto) bool {
	a := attr(n, "perm")
	if a == nil {
		return true
	}
	p := a.GetInts()
	return len(p) == 2 && p[0] == 1 && p[1] == 0
}
