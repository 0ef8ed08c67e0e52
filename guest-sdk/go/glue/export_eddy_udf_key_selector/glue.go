// Package export_eddy_udf_key_selector connects the generated exports to the SDK (package eddy).
package export_eddy_udf_key_selector

import (
	"eddy"
	witTypes "eddy/witrt/types"
)

func SelectKeys(input []uint8) witTypes.Result[[]uint8, string] {
	out, err := eddy.RunSelectKeys(input)
	if err != nil {
		return witTypes.Err[[]uint8](err.Error())
	}
	return witTypes.Ok[[]uint8, string](out)
}
