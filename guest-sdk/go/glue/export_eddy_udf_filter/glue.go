// Package export_eddy_udf_filter connects the generated exports to the SDK (package eddy).
package export_eddy_udf_filter

import (
	"eddy"
	witTypes "eddy/witrt/types"
)

func FilterBatch(input []uint8) witTypes.Result[[]bool, string] {
	out, err := eddy.RunFilter(input)
	if err != nil {
		return witTypes.Err[[]bool](err.Error())
	}
	return witTypes.Ok[[]bool, string](out)
}
