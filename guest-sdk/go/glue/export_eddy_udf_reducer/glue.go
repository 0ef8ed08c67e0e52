// Package export_eddy_udf_reducer connects the generated exports to the SDK (package eddy).
package export_eddy_udf_reducer

import (
	"eddy"
	witTypes "eddy/witrt/types"
)

func Reduce(accumulators []uint8, inputs []uint8, targets []uint32) witTypes.Result[[]uint8, string] {
	out, err := eddy.RunReduce(accumulators, inputs, targets)
	if err != nil {
		return witTypes.Err[[]uint8](err.Error())
	}
	return witTypes.Ok[[]uint8, string](out)
}
