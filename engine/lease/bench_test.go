package lease

import "testing"

// BenchmarkAcquireRelease is what a real run pays for its lease: open,
// flock, read, write and fsync the holder, and release.
func BenchmarkAcquireRelease(b *testing.B) {
	dir := b.TempDir()
	for b.Loop() {
		l, err := Acquire(dir, "bench", Holder{RunID: "r"}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(); err != nil {
			b.Fatal(err)
		}
	}
}
