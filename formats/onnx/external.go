package onnx

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pb "github.com/sorsa-convert/sorsa-convert/formats/onnx/onnxpb"
)

// externalRef is a parsed external_data entry list.
type externalRef struct {
	location string
	offset   int64
	length   int64 // -1 when absent: up to the end of the file
}

func parseExternal(t *pb.TensorProto) (externalRef, error) {
	r := externalRef{length: -1}
	for _, e := range t.GetExternalData() {
		switch e.GetKey() {
		case "location":
			r.location = e.GetValue()
		case "offset", "length":
			v, err := strconv.ParseInt(e.GetValue(), 10, 64)
			if err != nil || v < 0 {
				return r, fmt.Errorf("external data %s %q is not a non-negative decimal", e.GetKey(), e.GetValue())
			}
			if e.GetKey() == "offset" {
				r.offset = v
			} else {
				r.length = v
			}
		}
	}
	if err := checkLocation(r.location); err != nil {
		return r, err
	}
	return r, nil
}

// checkLocation refuses external data locations that could leave the
// model's folder: empty, absolute, or with a ".." component.
func checkLocation(loc string) error {
	if loc == "" {
		return fmt.Errorf("external data has no location")
	}
	if strings.ContainsRune(loc, 0) {
		return fmt.Errorf("external data location %q has a NUL byte", loc)
	}
	slashed := strings.ReplaceAll(loc, `\`, "/")
	if filepath.IsAbs(loc) || strings.HasPrefix(slashed, "/") || filepath.VolumeName(loc) != "" ||
		(len(loc) >= 2 && loc[1] == ':') {
		return fmt.Errorf("external data location %q is absolute", loc)
	}
	for _, part := range strings.Split(slashed, "/") {
		if part == ".." {
			return fmt.Errorf("external data location %q leaves the model's folder", loc)
		}
	}
	return nil
}

// externalPath is the file an external reference points at: its location
// (with either slash) inside the model's folder.
func (m *Model) externalPath(r externalRef) string {
	return filepath.Join(m.Dir, filepath.FromSlash(strings.ReplaceAll(r.location, `\`, "/")))
}

// externalSection opens the byte range an external tensor points at,
// after checking that the file really holds want bytes there (want < 0:
// whatever the reference says). The caller closes the file.
func (m *Model) externalSection(t *pb.TensorProto, want int64) (*os.File, span, error) {
	r, err := parseExternal(t)
	if err != nil {
		return nil, span{}, m.tensorError(t, "", err)
	}
	if m.Dir == "" {
		return nil, span{}, m.tensorError(t, "external data needs the model's folder (Model.Dir)", nil)
	}
	path := m.externalPath(r)
	f, err := os.Open(path)
	if err != nil {
		return nil, span{}, tensorErr(path, t.GetName(), "external data", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, span{}, tensorErr(path, t.GetName(), "external data", err)
	}
	size := st.Size()
	fail := func(msg string) (*os.File, span, error) {
		f.Close()
		return nil, span{}, &FormatError{File: path, Tensor: t.GetName(), Offset: r.offset, Msg: msg}
	}
	if !st.Mode().IsRegular() {
		return fail("external data is not a regular file")
	}
	if r.offset > size {
		return fail(fmt.Sprintf("offset beyond the end of the %d-byte file", size))
	}
	n := r.length
	if n < 0 {
		n = size - r.offset
	}
	if n > size-r.offset {
		return fail(fmt.Sprintf("%d bytes from the offset run past the end of the %d-byte file", n, size))
	}
	if want >= 0 && n != want {
		return fail(fmt.Sprintf("external data has %d bytes, shape %v of %s needs %d",
			n, t.GetDims(), TypeName(t.GetDataType()), want))
	}
	return f, span{r.offset, n}, nil
}

// readExternal reads an external tensor's size bytes (or its staged
// replacement).
func (m *Model) readExternal(t *pb.TensorProto, size int64) ([]byte, error) {
	m.mu.Lock()
	s, ok := m.staged[t]
	scratch := m.scratch
	m.mu.Unlock()
	if ok {
		b := make([]byte, s.n)
		if _, err := scratch.ReadAt(b, s.off); err != nil {
			return nil, m.tensorError(t, "scratch file", err)
		}
		return b, nil
	}
	f, s, err := m.externalSection(t, size)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, s.n) // s.n was checked against the file's size
	if _, err := f.ReadAt(b, s.off); err != nil {
		return nil, &FormatError{File: f.Name(), Tensor: t.GetName(), Offset: s.off, Msg: "reading external data", Err: err}
	}
	return b, nil
}
