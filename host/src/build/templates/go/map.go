// A map stage in Go: upper-cases each event's value (ASCII), keeping key, time and headers.
// Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.go (put next to this file by each build) turns this one function into the
// `on-event` and `on-batch` entry points. Call emit(value) zero, one or more times (key, time
// and headers kept), or EmitEvent(Event{...}) for a whole event of your own; return
// InvalidInput("why") to fail one event (it goes to the dead-letter topic).
package main

func process(e *Event, emit func(value []byte)) error {
	v := make([]byte, len(e.Value))
	for i, c := range e.Value {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		v[i] = c
	}
	emit(v)
	return nil
}

func init() { Stage(process) }

func main() {}
