// A filter in Go: keeps the events whose value contains `error`, unchanged, and drops the
// others. Build: `flowgate plugin build`; check against test/: `flowgate plugin test`.
//
// flowgate.go (put next to this file by each build) turns this one function into the `keep`
// and `keep-batch` entry points of the filter world (`world = "filter"` in flowgate.toml).
// Return true to keep an event as it is (it goes on from the host's own copy: nothing is copied
// out of the plugin), false to drop it; return InvalidInput("why") to fail one event (it goes
// to the dead-letter topic).
package main

import "bytes"

var word = []byte("error")

func keep(e *Event) (bool, error) {
	return bytes.Contains(e.Value, word), nil
}

func init() { Filter(keep) }

func main() {}
