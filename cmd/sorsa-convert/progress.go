package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// bar is a one-line progress bar on a terminal: done/total bytes, rate,
// ETA and the item just finished. It draws at most ten times a second.
type bar struct {
	w     io.Writer
	label string
	total int64
	done  int64
	start time.Time
	last  time.Time
	item  string
}

func (b *bar) Start(total int64) {
	b.total, b.start = total, time.Now()
	b.draw(true)
}

func (b *bar) Add(n int64, item string) {
	b.done += n
	b.item = item
	b.draw(false)
}

func (b *bar) Finish() {
	b.draw(true)
	fmt.Fprintln(b.w)
}

func (b *bar) draw(force bool) {
	now := time.Now()
	if !force && now.Sub(b.last) < 100*time.Millisecond {
		return
	}
	b.last = now
	frac := 0.0
	if b.total > 0 {
		frac = float64(b.done) / float64(b.total)
	}
	const width = 24
	fill := int(frac * width)
	el := now.Sub(b.start).Seconds()
	rate, eta := 0.0, "--:--"
	if el > 0 {
		rate = float64(b.done) / el
	}
	if rate > 0 && b.done < b.total {
		eta = clock(float64(b.total-b.done) / rate)
	} else if b.done >= b.total {
		eta = clock(el)
	}
	item := b.item
	if len(item) > 32 {
		item = "…" + item[len(item)-31:]
	}
	fmt.Fprintf(b.w, "\r\033[K%s [%s%s] %3.0f%% %s/%s %s/s %s %s",
		b.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill), 100*frac,
		human(b.done), human(b.total), human(int64(rate)), eta, item)
}

func clock(sec float64) string {
	s := int(sec + 0.5)
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// human formats a byte count with binary prefixes.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
