// Package export_eddy_udf_processor connects the generated exports to the SDK (package eddy/process).
package export_eddy_udf_processor

import (
	"eddy"
	"eddy/process"
	"eddy/wit/imports/eddy_udf_processor"
	"eddy/wit/imports/eddy_udf_types"
	witTypes "eddy/witrt/types"
)

func Process(input uint32, records []uint8) witTypes.Result[eddy_udf_types.Outputs, string] {
	var out eddy.Output
	if err := process.RunProcess(input, records, &out); err != nil {
		return witTypes.Err[eddy_udf_types.Outputs](err.Error())
	}
	return witTypes.Ok[eddy_udf_types.Outputs, string](outputs(&out))
}

func OnTimers(timers []eddy_udf_processor.FiredTimer) witTypes.Result[eddy_udf_types.Outputs, string] {
	fired := make([]process.Timer, len(timers))
	for i, t := range timers {
		fired[i] = process.Timer{Timestamp: t.Timestamp, ProcessingTime: t.Domain == eddy_udf_types.TimeDomain_ProcessingTime}
		if t.Key.Tag() == witTypes.OptionSome {
			fired[i].Key = t.Key.Some()
		}
	}
	var out eddy.Output
	if err := process.RunTimers(fired, &out); err != nil {
		return witTypes.Err[eddy_udf_types.Outputs](err.Error())
	}
	return witTypes.Ok[eddy_udf_types.Outputs, string](outputs(&out))
}

func outputs(o *eddy.Output) eddy_udf_types.Outputs {
	main, side := o.Finish()
	out := eddy_udf_types.Outputs{Main: main}
	for _, s := range side {
		out.Side = append(out.Side, eddy_udf_types.SideOutput{Tag: s.Tag, Records: s.Records})
	}
	return out
}
