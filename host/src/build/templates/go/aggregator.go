// An aggregator in Go: per key and window, the count and the sum of the events' values, which
// are integers written as text (-?[0-9]{1,18}); any other value fails with invalid-input (to
// the dead-letter topic). Each window's result is {"count":…,"sum":…}.
// Build: `flowgate plugin build`; check: `flowgate plugin test` (windows as `[test]` in
// flowgate.toml says).
//
// The host assigns events to windows (the stage's `window` in the pipeline: tumbling, hopping
// or session), keeps one accumulator per key and window and calls finish when a window is due;
// merge lets session windows that grow into each other become one. The accumulator is bytes in
// an encoding of your own: here 16 little-endian bytes, the count then the sum. add gets a copy
// of it: when add returns an error, the accumulator stays as it was.
package main

import (
	"encoding/binary"
	"strconv"
)

var le64 = binary.LittleEndian

func create() []byte { return make([]byte, 16) }

// badAcc fails a call on an accumulator this plugin did not write.
var badAcc = Fatal("an accumulator is not 16 bytes: " +
	"was it written by another version of this plugin?")

func add(acc []byte, e *Event) ([]byte, error) {
	if len(acc) != 16 {
		return nil, badAcc
	}
	n, ok := integer(e.Value)
	if !ok {
		return nil, InvalidInput("not an integer")
	}
	le64.PutUint64(acc, le64.Uint64(acc)+1)
	le64.PutUint64(acc[8:], le64.Uint64(acc[8:])+uint64(n))
	return acc, nil
}

func merge(a, b []byte) ([]byte, bool) {
	if len(a) != 16 || len(b) != 16 {
		return nil, false
	}
	le64.PutUint64(a, le64.Uint64(a)+le64.Uint64(b))
	le64.PutUint64(a[8:], le64.Uint64(a[8:])+le64.Uint64(b[8:]))
	return a, true
}

func finish(acc []byte, p *Pane) ([]byte, error) {
	if len(acc) != 16 {
		return nil, badAcc
	}
	out := append([]byte(nil), `{"count":`...)
	out = strconv.AppendInt(out, int64(le64.Uint64(acc)), 10)
	out = append(out, `,"sum":`...)
	out = strconv.AppendInt(out, int64(le64.Uint64(acc[8:])), 10)
	return append(out, '}'), nil
}

// integer is the value as a number when it is exactly -?[0-9]{1,18}.
func integer(v []byte) (int64, bool) {
	digits := v
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(digits) < len(v) {
		n = -n
	}
	return n, true
}

func init() { Aggregator(create, add, merge, finish) }

func main() {}
