// Package export_eddy_udf_flat_mapper connects the generated exports to the SDK (package eddy).
package export_eddy_udf_flat_mapper

import (
	"eddy"
	witTypes "eddy/witrt/types"
)

func FlatMapBatch(input []uint8) witTypes.Result[[]uint8, string] {
	out, err := eddy.RunFlatMap(input)
	if err != nil {
		return witTypes.Err[[]uint8](err.Error())
	}
	return witTypes.Ok[[]uint8, string](out)
}
