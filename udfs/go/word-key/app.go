// Keys records by their lower-cased value (world `key-selector-udf`), like udfs/rust/word-key.
package main

import (
	"bytes"
	"errors"

	"eddy"
)

func init() {
	eddy.SelectKey(func(r eddy.Record) ([]byte, error) {
		if !eddy.ValidUTF8(r.Value) {
			return nil, errors.New("the value is not UTF-8")
		}
		return bytes.ToLower(r.Value), nil
	})
}

func main() {}
