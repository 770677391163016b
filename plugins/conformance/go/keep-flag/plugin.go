// Conformance: a filter on a JSON field. Keeps an event whose value is a JSON object with a
// top-level field "keep" that is true; a value that is not a JSON object fails with
// invalid-input "not a JSON object".
package main

import "encoding/json"

func keep(e *Event) (bool, error) {
	var v any
	if json.Unmarshal(e.Value, &v) != nil {
		return false, InvalidInput("not a JSON object")
	}
	o, ok := v.(map[string]any)
	if !ok {
		return false, InvalidInput("not a JSON object")
	}
	flag, _ := o["keep"].(bool)
	return flag, nil
}

func init() { Filter(keep) }

func main() {}
