// Package export_eddy_udf_timestamp_assigner connects the generated exports to the SDK (package eddy).
package export_eddy_udf_timestamp_assigner

import (
	"eddy"
	witTypes "eddy/witrt/types"
)

func ExtractTimestamps(input []uint8) witTypes.Result[[]int64, string] {
	out, err := eddy.RunExtractTimestamps(input)
	if err != nil {
		return witTypes.Err[[]int64](err.Error())
	}
	return witTypes.Ok[[]int64, string](out)
}
