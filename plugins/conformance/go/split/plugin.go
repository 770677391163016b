// Conformance: flat-map. One event per non-empty line of the value (split on '\n'); key, time
// and headers copied to each.
package main

import "bytes"

func process(e *Event, emit func(value []byte)) error {
	for _, part := range bytes.Split(e.Value, []byte{'\n'}) {
		if len(part) > 0 {
			emit(part)
		}
	}
	return nil
}

func init() { Stage(process) }

func main() {}
