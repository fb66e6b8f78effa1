package redact

import (
	"io"
	"sync"
)

// maxRetained is the largest output buffer a Writer keeps between writes.
const maxRetained = 64 << 10

// Writer masks secrets in a stream of writes, such as a command's output,
// before passing it on. A secret split across Write calls is still masked:
// when the data written so far ends with what could be the start of a secret,
// those bytes (at most the longest form's length minus one) are held back
// until the next Write or Flush. Everything else is passed on by the Write
// that supplied it.
//
// Secrets added to the Set after the Writer was made apply from the next
// Write. Safe for concurrent use. Call Flush when the stream ends.
type Writer struct {
	set *Set
	w   io.Writer

	mu   sync.Mutex
	held []byte // undecided tail of the stream
	out  []byte // reusable output buffer
	err  error  // first error from w; sticky
}

// Writer returns a Writer that masks the secrets of s and writes the result
// to w.
func (s *Set) Writer(w io.Writer) *Writer {
	return &Writer{set: s, w: w}
}

// Write masks p and writes what is decided to the underlying writer. It
// returns len(p) on success. After the underlying writer fails, Write and
// Flush return that error without writing anything.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if err := w.emit(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes any held-back bytes, masked, to the underlying writer. It
// does not flush or close the underlying writer itself.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if len(w.held) == 0 {
		return nil
	}
	return w.emit(nil, true)
}

// emit masks held+p and writes the decided part; with final set it writes
// everything. w.mu must be held.
func (w *Writer) emit(p []byte, final bool) error {
	st := w.set.st.Load()
	if st == nil {
		// No secrets, so nothing was ever held back.
		return w.write(p)
	}
	data := p
	if len(w.held) > 0 {
		w.held = append(w.held, p...)
		data = w.held
	}
	out, n, hit := st.scan(w.out[:0], data, final)
	if !hit {
		out = data[:n]
	} else if cap(out) <= maxRetained {
		w.out = out[:0]
	}
	err := w.write(out)
	// Keep the undecided tail; this may move bytes within w.held.
	w.held = append(w.held[:0], data[n:]...)
	if cap(w.held) > maxRetained && len(w.held) < maxRetained {
		w.held = append([]byte(nil), w.held...)
	}
	return err
}

// write writes b to the underlying writer, recording any error.
func (w *Writer) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := w.w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
	}
	return err
}
