package sandbox

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// console shares the output between lasting lines (errors, the summary)
// and the status line, which on a terminal is redrawn in place.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	live  bool
	shown bool // a live status line is on screen
}

// clearLine is a carriage return and ANSI "erase to end of line".
const clearLine = "\r\x1b[K"

// IsTerminal reports whether w is a terminal, where a redrawn status line
// reads well; elsewhere (a pipe, a CI log) periodic lines do.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Printf prints a lasting line, moving the status line out of the way.
func (c *console) Printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shown {
		fmt.Fprint(c.w, clearLine)
		c.shown = false
	}
	fmt.Fprintf(c.w, format+"\n", args...)
}

// Status shows the current progress.
func (c *console) Status(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live {
		fmt.Fprintln(c.w, s)
		return
	}
	fmt.Fprint(c.w, clearLine+s)
	c.shown = true
}

// EndStatus leaves the last status line on screen and moves past it.
func (c *console) EndStatus() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shown {
		fmt.Fprintln(c.w)
		c.shown = false
	}
}
