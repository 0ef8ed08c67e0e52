// Package export_eddy_udf_lifecycle connects the generated exports to the SDK (package eddy).
package export_eddy_udf_lifecycle

import (
	"eddy"
	witTypes "eddy/witrt/types"
)

func Init(config string) witTypes.Result[witTypes.Unit, string] {
	if err := eddy.RunInit(config); err != nil {
		return witTypes.Err[witTypes.Unit](err.Error())
	}
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}
