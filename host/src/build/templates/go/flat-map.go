// A flat-map stage in Go: one event per word of the value (split on spaces, empty pieces
// skipped), each with the input's key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.go (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call emit(value) zero, one or more times (key, time
// and headers kept), or EmitEvent(Event{...}) for a whole event of your own; return
// InvalidInput("why") to fail one event (it goes to the dead-letter topic).
package main

import "bytes"

func process(e *Event, emit func(value []byte)) error {
	for _, w := range bytes.Split(e.Value, []byte{' '}) {
		if len(w) > 0 {
			emit(w)
		}
	}
	return nil
}

func init() { Stage(process) }

func main() {}
