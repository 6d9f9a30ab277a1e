package onnx

import (
	"fmt"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// scope is a graph together with where it sits: the enclosing graph, and
// in path the node and attribute that hold it. Subgraphs may read the values of every
// enclosing graph.
type scope struct {
	g      *pb.GraphProto
	path   string // "graph", "graph/If_0.then_branch", ...
	parent *scope
}

// nodeLabel names a node for messages and paths: its name, or its op type
// and index when it has none.
func nodeLabel(n *pb.NodeProto, i int) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return fmt.Sprintf("%s#%d", n.GetOpType(), i)
}

// walkGraphs calls fn for the main graph and then every subgraph held in a
// node attribute, depth first, enclosing graphs before the graphs they hold.
func walkGraphs(m *pb.ModelProto, fn func(*scope) error) error {
	if m.GetGraph() == nil {
		return nil
	}
	return walkScope(&scope{g: m.GetGraph(), path: "graph"}, fn)
}

func walkScope(s *scope, fn func(*scope) error) error {
	if err := fn(s); err != nil {
		return err
	}
	for i, n := range s.g.GetNode() {
		for _, a := range n.GetAttribute() {
			if g := a.GetG(); g != nil {
				sub := &scope{g: g, path: s.path + "/" + nodeLabel(n, i) + "." + a.GetName(), parent: s}
				if err := walkScope(sub, fn); err != nil {
					return err
				}
			}
			for k, g := range a.GetGraphs() {
				sub := &scope{g: g, path: fmt.Sprintf("%s/%s.%s[%d]", s.path, nodeLabel(n, i), a.GetName(), k), parent: s}
				if err := walkScope(sub, fn); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// tensorRef is one TensorProto of a model and the role it plays.
type tensorRef struct {
	t           *pb.TensorProto
	initializer bool // a graph initializer (of any graph), as opposed to an attribute value or sparse part
}

// eachTensor calls fn for every TensorProto in the model: initializers,
// sparse initializers' parts and node attribute values of every graph
// (subgraphs, training graphs and function bodies included).
func eachTensor(m *pb.ModelProto, fn func(tensorRef) error) error {
	var graph func(g *pb.GraphProto) error
	var nodes func(ns []*pb.NodeProto) error
	sparse := func(s *pb.SparseTensorProto) error {
		if s == nil {
			return nil
		}
		for _, t := range []*pb.TensorProto{s.GetValues(), s.GetIndices()} {
			if t != nil {
				if err := fn(tensorRef{t: t}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	attrs := func(as []*pb.AttributeProto) error {
		for _, a := range as {
			if t := a.GetT(); t != nil {
				if err := fn(tensorRef{t: t}); err != nil {
					return err
				}
			}
			for _, t := range a.GetTensors() {
				if err := fn(tensorRef{t: t}); err != nil {
					return err
				}
			}
			if err := sparse(a.GetSparseTensor()); err != nil {
				return err
			}
			for _, s := range a.GetSparseTensors() {
				if err := sparse(s); err != nil {
					return err
				}
			}
			if g := a.GetG(); g != nil {
				if err := graph(g); err != nil {
					return err
				}
			}
			for _, g := range a.GetGraphs() {
				if err := graph(g); err != nil {
					return err
				}
			}
		}
		return nil
	}
	nodes = func(ns []*pb.NodeProto) error {
		for _, n := range ns {
			if err := attrs(n.GetAttribute()); err != nil {
				return err
			}
		}
		return nil
	}
	graph = func(g *pb.GraphProto) error {
		if g == nil {
			return nil
		}
		for _, t := range g.GetInitializer() {
			if err := fn(tensorRef{t: t, initializer: true}); err != nil {
				return err
			}
		}
		for _, s := range g.GetSparseInitializer() {
			if err := sparse(s); err != nil {
				return err
			}
		}
		return nodes(g.GetNode())
	}
	if err := graph(m.GetGraph()); err != nil {
		return err
	}
	for _, ti := range m.GetTrainingInfo() {
		if err := graph(ti.GetInitialization()); err != nil {
			return err
		}
		if err := graph(ti.GetAlgorithm()); err != nil {
			return err
		}
	}
	for _, f := range m.GetFunctions() {
		if err := attrs(f.GetAttributeProto()); err != nil {
			return err
		}
		if err := nodes(f.GetNode()); err != nil {
			return err
		}
	}
	return nil
}
