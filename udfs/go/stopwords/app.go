// Drops common words (world `filter-udf`), like udfs/rust/stopwords. `config: {"words": ["a", "the"]}` replaces
// the built-in list.
package main

import (
	"encoding/json"
	"errors"
	"strings"

	"eddy"
)

var words map[string]bool

func init() {
	eddy.OnInit(func(config string) error {
		list := []string{"a", "an", "and", "the", "of", "to", "in", "is", "it", "on", "for"}
		var doc map[string]json.RawMessage
		if json.Unmarshal([]byte(config), &doc) == nil {
			if raw, ok := doc["words"]; ok {
				var custom []string
				if json.Unmarshal(raw, &custom) != nil || custom == nil {
					return errors.New("config.words must be a list of strings")
				}
				list = custom
			}
		}
		words = map[string]bool{}
		for _, w := range list {
			words[strings.ToLower(w)] = true
		}
		return nil
	})
	eddy.Filter(func(r eddy.Record) (bool, error) {
		if !eddy.ValidUTF8(r.Value) {
			return false, errors.New("the value is not UTF-8")
		}
		return !words[strings.ToLower(string(r.Value))], nil
	})
}

func main() {}
