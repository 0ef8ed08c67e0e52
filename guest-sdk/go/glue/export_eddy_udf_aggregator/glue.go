// Package export_eddy_udf_aggregator connects the generated exports to the SDK (package eddy).
package export_eddy_udf_aggregator

import (
	"eddy"
	witTypes "eddy/witrt/types"
)

func result(out []byte, err error) witTypes.Result[[]uint8, string] {
	if err != nil {
		return witTypes.Err[[]uint8](err.Error())
	}
	return witTypes.Ok[[]uint8, string](out)
}

func CreateAccumulator() witTypes.Result[[]uint8, string] { return result(eddy.RunCreateAccumulator()) }

func Add(accumulators []uint8, inputs []uint8, targets []uint32) witTypes.Result[[]uint8, string] {
	return result(eddy.RunAggregate(accumulators, inputs, targets, false))
}

func Merge(accumulators []uint8, others []uint8, targets []uint32) witTypes.Result[[]uint8, string] {
	return result(eddy.RunAggregate(accumulators, others, targets, true))
}

func GetResult(accumulators []uint8) witTypes.Result[[]uint8, string] {
	return result(eddy.RunGetResult(accumulators))
}
