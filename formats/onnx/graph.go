package onnx

import (
	"fmt"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// defKind is what defines a value name in a graph.
type defKind int

const (
	defInput defKind = iota
	defInitializer
	defConstant // output of a Constant node with a tensor value
	defNode     // output of any other node
)

// valueDef is the definition of one value name.
type valueDef struct {
	name   string
	kind   defKind
	sc     *scope
	tensor *pb.TensorProto // initializer or Constant value
	node   *pb.NodeProto   // producing node (defConstant, defNode)
	index  int             // producing node's index in sc.g.Node
	input  bool            // also listed as a graph input (an overridable initializer)
}

// use is one place a value is read: input slot k of a node, or a graph
// output (node == nil).
type use struct {
	sc    *scope
	node  *pb.NodeProto
	index int // node index in sc.g.Node
	k     int // input slot
}

// graphIndex holds every scope of a model with the definitions and uses of
// every value name, resolved through enclosing graphs as ONNX scoping does.
type graphIndex struct {
	scopes []*scope
	defs   map[*scope]map[string]*valueDef
	uses   map[*valueDef][]use
}

func isConstant(n *pb.NodeProto) bool {
	return n.GetOpType() == "Constant" && (n.GetDomain() == "" || n.GetDomain() == "ai.onnx")
}

// attr returns the node's attribute called name, or nil.
func attr(n *pb.NodeProto, name string) *pb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func indexGraphs(m *pb.ModelProto) *graphIndex {
	ix := &graphIndex{defs: map[*scope]map[string]*valueDef{}, uses: map[*valueDef][]use{}}
	walkGraphs(m, func(sc *scope) error {
		ix.scopes = append(ix.scopes, sc)
		d := map[string]*valueDef{}
		for _, in := range sc.g.GetInput() {
			if in.GetName() != "" {
				d[in.GetName()] = &valueDef{name: in.GetName(), kind: defInput, sc: sc}
			}
		}
		for _, t := range sc.g.GetInitializer() {
			if t.GetName() == "" {
				continue
			}
			_, isIn := d[t.GetName()]
			d[t.GetName()] = &valueDef{name: t.GetName(), kind: defInitializer, sc: sc, tensor: t, input: isIn}
		}
		for i, n := range sc.g.GetNode() {
			for k, out := range n.GetOutput() {
				if out == "" {
					continue
				}
				vd := &valueDef{name: out, kind: defNode, sc: sc, node: n, index: i}
				if k == 0 && isConstant(n) {
					if a := attr(n, "value"); a != nil && a.GetT() != nil {
						vd.kind, vd.tensor = defConstant, a.GetT()
					}
				}
				d[out] = vd
			}
		}
		ix.defs[sc] = d
		return nil
	})
	for _, sc := range ix.scopes {
		for i, n := range sc.g.GetNode() {
			for k, in := range n.GetInput() {
				if vd := ix.resolve(sc, in); vd != nil {
					ix.uses[vd] = append(ix.uses[vd], use{sc: sc, node: n, index: i, k: k})
				}
			}
		}
		for _, out := range sc.g.GetOutput() {
			if vd := ix.resolve(sc, out.GetName()); vd != nil {
				ix.uses[vd] = append(ix.uses[vd], use{sc: sc})
			}
		}
	}
	return ix
}

// resolve finds the definition a name refers to in sc: sc's own, else the
// nearest enclosing graph's.
func (ix *graphIndex) resolve(sc *scope, name string) *valueDef {
	if name == "" {
		return nil
	}
	for s := sc; s != nil; s = s.parent {
		if vd, ok := ix.defs[s][name]; ok {
			return vd
		}
	}
	return nil
}

// Validate checks the structure of every graph of m: no value is produced
// by two nodes of one graph, and no nodes depend on each other in a cycle
// (reads through subgraphs count as reads of the node holding them).
func Validate(m *Model) error {
	return walkGraphs(m.Proto, func(sc *scope) error { return checkGraph(m, sc) })
}

func checkGraph(m *Model, sc *scope) error {
	nodes := sc.g.GetNode()
	producer := map[string]int{}
	for i, n := range nodes {
		for _, out := range n.GetOutput() {
			if out == "" {
				continue
			}
			if j, dup := producer[out]; dup {
				return &FormatError{File: m.File, Offset: -1, Msg: fmt.Sprintf("%s: value %q is produced by nodes %s and %s",
					sc.path, out, nodeLabel(nodes[j], j), nodeLabel(n, i))}
			}
			producer[out] = i
		}
	}
	// Kahn's algorithm over the nodes of this graph.
	deps := make([][]int, len(nodes)) // deps[i]: nodes i reads from
	for i, n := range nodes {
		reads := append([]string(nil), n.GetInput()...)
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil {
				reads = append(reads, freeNames(a.GetG())...)
			}
			for _, g := range a.GetGraphs() {
				reads = append(reads, freeNames(g)...)
			}
		}
		for _, r := range reads {
			if j, ok := producer[r]; ok {
				deps[i] = append(deps[i], j)
			}
		}
	}
	pending := make([]int, len(nodes))
	readers := make([][]int, len(nodes))
	for i, ds := range deps {
		pending[i] = len(ds)
		for _, j := range ds {
			readers[j] = append(readers[j], i)
		}
	}
	var ready []int
	for i, p := range pending {
		if p == 0 {
			ready = append(ready, i)
		}
	}
	done := 0
	for len(ready) > 0 {
		i := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		done++
		for _, r := range readers[i] {
			if pending[r]--; pending[r] == 0 {
				ready = append(ready, r)
			}
		}
	}
	if done < len(nodes) {
		for i, p := range pending {
			if p > 0 {
				return &FormatError{File: m.File, Offset: -1, Msg: fmt.Sprintf("%s: node %s", sc.path, nodeLabel(nodes[i], i)), Err: ErrCycle}
			}
		}
	}
	return nil
}

// freeNames lists the names g (with its own subgraphs) reads but does not
// define: the values it takes from enclosing graphs.
func freeNames(g *pb.GraphProto) []string {
	defined := map[string]bool{}
	for _, in := range g.GetInput() {
		defined[in.GetName()] = true
	}
	for _, t := range g.GetInitializer() {
		defined[t.GetName()] = true
	}
	for _, n := range g.GetNode() {
		for _, out := range n.GetOutput() {
			defined[out] = true
		}
	}
	var free []string
	seen := map[string]bool{}
	add := func(name string) {
		if name != "" && !defined[name] && !seen[name] {
			seen[name] = true
			free = append(free, name)
		}
	}
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			add(in)
		}
		for _, a := range n.GetAttribute() {
			if a.GetG() != nil {
				for _, name := range freeNames(a.GetG()) {
					add(name)
				}
			}
			for _, sg := range a.GetGraphs() {
				for _, name := range freeNames(sg) {
					add(name)
				}
			}
		}
	}
	for _, out := range g.GetOutput() {
		add(out.GetName())
	}
	return free
}
