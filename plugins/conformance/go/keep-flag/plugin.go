// Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
// top-level field "keep" that is true; a value that is not a JSON object fails with
// invalid-input "not a JSON object".
package main

import "encoding/json"

func process(e *Event, emit func(value []byte)) error {
	var v any
	if json.Unmarshal(e.Value, &v) != nil {
		return InvalidInput("not a JSON object")
	}
	o, ok := v.(map[string]any)
	if !ok {
		return InvalidInput("not a JSON object")
	}
	if keep, _ := o["keep"].(bool); keep {
		emit(e.Value)
	}
	return nil
}

func init() { Stage(process) }

func main() {}
