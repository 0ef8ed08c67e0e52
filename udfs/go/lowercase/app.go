// Lower-cases values (world `mapper-udf`), like udfs/rust/lowercase.
package main

import (
	"bytes"
	"errors"

	"eddy"
)

func init() {
	eddy.Map(func(r eddy.Record) (eddy.Record, error) {
		if !eddy.ValidUTF8(r.Value) {
			return r, errors.New("the value is not UTF-8")
		}
		r.Value = bytes.ToLower(r.Value)
		return r, nil
	})
}

func main() {}
