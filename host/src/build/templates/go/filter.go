// A filter stage in Go: keeps the events whose value contains `error`, unchanged.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.go (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call emit(value) to keep an event with a value
// (key, time and headers kept), EmitEvent(Event{...}) for a whole event of your own, nothing
// to drop it; return InvalidInput("why") to fail one event (it goes to the dead-letter topic).
package main

import "bytes"

var word = []byte("error")

func process(e *Event, emit func(value []byte)) error {
	if bytes.Contains(e.Value, word) {
		emit(e.Value)
	}
	return nil
}

func init() { Stage(process) }

func main() {}
