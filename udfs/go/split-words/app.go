// Splits text into words, one record each (world `flat-mapper-udf`), like udfs/rust/split-words: the `text` field
// of JSON records, else the whole value. A word is a run of letters, digits and apostrophes; every non-ASCII
// character counts as a letter.
package main

import (
	"encoding/json"
	"errors"

	"eddy"
)

func inWord(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '\'' || c >= 0x80
}

func init() {
	eddy.FlatMap(func(r eddy.Record, out *eddy.Output) error {
		var text []byte
		var doc any
		if json.Unmarshal(r.Value, &doc) == nil {
			// JSON without a string `text` has no words.
			if obj, ok := doc.(map[string]any); ok {
				if s, ok := obj["text"].(string); ok {
					text = []byte(s)
				}
			}
		} else if eddy.ValidUTF8(r.Value) {
			text = r.Value
		} else {
			return errors.New("the value is not UTF-8")
		}
		for i := 0; i < len(text); {
			for i < len(text) && !inWord(text[i]) {
				i++
			}
			start := i
			for i < len(text) && inWord(text[i]) {
				i++
			}
			if i > start {
				out.Emit(eddy.Record{Timestamp: r.Timestamp, Value: text[start:i]})
			}
		}
		return nil
	})
}

func main() {}
