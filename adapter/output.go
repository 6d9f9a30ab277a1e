package adapter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
)

// outputs is a set of files written as one transaction: each file is
// written under a temporary name in its destination folder, fsynced, and
// renamed over its final name only when every file of the set is complete.
// On failure, Abort removes every temporary and leaves existing outputs as
// they were.
type outputs struct {
	// failAfter, when > 0, makes every file fail with ENOSPC once it has
	// taken that many bytes: tests use it to simulate a full disk.
	failAfter int64
	// noHash skips the sha256 of outputs (merge records no checksums).
	noHash bool
	// buffered writes every file through the page cache (see directWriter).
	buffered bool

	mu     sync.Mutex
	files  []*outFile
	stages []string // staging folders whose files move into their parent on commit
	dirs   []string // folders this transaction created, removed on Abort if empty
	done   bool
}

type outFile struct {
	final string
	tmp   *os.File
	dw    *directWriter // writes tmp; flushed by commit
	h     hash.Hash
	crc   hash.Hash32
	w     io.Writer
}

// Write implements io.Writer, hashing what it writes.
func (f *outFile) Write(p []byte) (int, error) { return f.w.Write(p) }

// mkdir creates dir (and parents) and remembers it for Abort.
func (o *outputs) mkdir(dir string) error {
	var made []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		made = append(made, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	o.mu.Lock()
	o.dirs = append(o.dirs, made...)
	o.mu.Unlock()
	return nil
}

// create opens a temporary file that becomes path on commit.
func (o *outputs) create(path string) (*outFile, error) {
	if err := o.mkdir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	// CreateTemp makes the file private; outputs are ordinary files.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	f := &outFile{final: path, tmp: tmp, dw: newDirectWriter(tmp, !o.buffered)}
	f.w = f.dw
	if !o.noHash {
		f.h = sha256.New()
		f.crc = crc32.New(castagnoli)
		f.w = io.MultiWriter(f.dw, f.h, f.crc)
	}
	if o.failAfter > 0 {
		f.w = &fullDisk{w: f.w, left: o.failAfter}
	}
	o.mu.Lock()
	o.files = append(o.files, f)
	o.mu.Unlock()
	return f, nil
}

// stage returns a new staging folder inside dir: files a format package
// writes there under their final names move into dir on commit.
func (o *outputs) stage(dir string) (string, error) {
	if err := o.mkdir(dir); err != nil {
		return "", err
	}
	st, err := os.MkdirTemp(dir, ".sorsa-stage-*")
	if err != nil {
		return "", err
	}
	o.mu.Lock()
	o.stages = append(o.stages, st)
	o.mu.Unlock()
	return st, nil
}

// writeFile writes a small file (a config, a copied tokenizer) in the set.
func (o *outputs) writeFile(path string, data []byte) (*outFile, error) {
	f, err := o.create(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(data); err != nil {
		return nil, err
	}
	return f, nil
}

// copyFile copies src into the set as dst.
func (o *outputs) copyFile(dst, src string) (*outFile, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	f, err := o.create(dst)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(f, in)
	return f, err
}

// hashSoFar returns f's path (base name) and the checksums of what was
// written to it so far (none when the set does not hash).
func (f *outFile) hashSoFar() FileHash {
	fh := FileHash{Path: filepath.Base(f.final)}
	if f.h != nil {
		fh.SHA256 = hex.EncodeToString(f.h.Sum(nil))
	}
	if f.crc != nil {
		fh.CRC32C = hex.EncodeToString(f.crc.Sum(nil))
	}
	return fh
}

// commit fsyncs every file, then renames them all into place.
func (o *outputs) commit() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, f := range o.files {
		if err := f.dw.Close(); err != nil {
			return fmt.Errorf("%s: %w", f.final, err)
		}
		if err := f.tmp.Sync(); err != nil {
			return fmt.Errorf("%s: %w", f.final, err)
		}
		if err := f.tmp.Close(); err != nil {
			return fmt.Errorf("%s: %w", f.final, err)
		}
	}
	// Staged files (written by another package's writer under their final
	// names) are synced before anything is renamed into place.
	var staged [][2]string
	for _, st := range o.stages {
		ents, err := os.ReadDir(st)
		if err != nil {
			return err
		}
		for _, e := range ents {
			src := filepath.Join(st, e.Name())
			if f, err := os.Open(src); err == nil {
				err = f.Sync()
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", src, err)
				}
			}
			staged = append(staged, [2]string{src, filepath.Join(filepath.Dir(st), e.Name())})
		}
	}
	for _, f := range o.files {
		if err := os.Rename(f.tmp.Name(), f.final); err != nil {
			return fmt.Errorf("%s: %w", f.final, err)
		}
	}
	for _, s := range staged {
		if err := os.Rename(s[0], s[1]); err != nil {
			return fmt.Errorf("%s: %w", s[1], err)
		}
	}
	for _, st := range o.stages {
		os.Remove(st)
		syncDir(filepath.Dir(st))
	}
	for _, d := range uniqueDirs(o.files) {
		syncDir(d)
	}
	o.done = true
	return nil
}

// abort removes every temporary file and the folders the set created.
// It is safe to call after commit (it then does nothing).
func (o *outputs) abort() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return
	}
	for _, f := range o.files {
		f.dw.abort()
		f.tmp.Close()
		os.Remove(f.tmp.Name())
	}
	for _, st := range o.stages {
		os.RemoveAll(st)
	}
	// Remove created folders deepest first; Remove fails on non-empty ones.
	sort.Slice(o.dirs, func(i, j int) bool { return len(o.dirs[i]) > len(o.dirs[j]) })
	for _, d := range o.dirs {
		os.Remove(d)
	}
	o.done = true
}

func uniqueDirs(files []*outFile) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		d := filepath.Dir(f.final)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// castagnoli is the CRC-32C table (hardware-accelerated on amd64 and
// arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// digest selects the checksums hashFile computes.
type digest int

const (
	digestSHA256 digest = 1 << iota
	digestCRC32C
)

// hashFile returns the checksums of a file selected by want, hex encoded
// ("" for those not computed), in one pass.
func hashFile(path string, want digest) (sha, crc string, err error) {
	f, err := openInput(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var ws []io.Writer
	var hs, hc hash.Hash
	if want&digestSHA256 != 0 {
		hs = sha256.New()
		ws = append(ws, hs)
	}
	if want&digestCRC32C != 0 {
		hc = crc32.New(castagnoli)
		ws = append(ws, hc)
	}
	if err := copyInput(io.MultiWriter(ws...), f); err != nil {
		return "", "", err
	}
	if hs != nil {
		sha = hex.EncodeToString(hs.Sum(nil))
	}
	if hc != nil {
		crc = hex.EncodeToString(hc.Sum(nil))
	}
	return sha, crc, nil
}

// copyInput writes f's bytes to w (see inputFile.pieces).
func copyInput(w io.Writer, f *inputFile) error {
	return f.pieces(0, f.size, 32<<20, func(b []byte) error {
		_, err := w.Write(b)
		return err
	})
}

// fullDisk fails with ENOSPC after left bytes, like a full file system.
type fullDisk struct {
	w    io.Writer
	left int64
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if int64(len(p)) > d.left {
		n, _ := d.w.Write(p[:d.left])
		d.left = 0
		return n, &os.PathError{Op: "write", Path: "output", Err: syscall.ENOSPC}
	}
	d.left -= int64(len(p))
	return d.w.Write(p)
}

// simulateFullDisk, set by tests, is the byte budget of every output file.
var simulateFullDisk int64

func newOutputs() *outputs { return &outputs{failAfter: simulateFullDisk} }

// writeErr names the output file in an error from writing it, unless the
// error is about the input (a bad tensor met while computing what to
// write), which already names the input file.
func writeErr(path string, err error) error {
	if errors.Is(err, ErrInput) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("writing %s: %w", path, err)
}
