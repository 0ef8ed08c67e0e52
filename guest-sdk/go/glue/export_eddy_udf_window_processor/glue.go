// Package export_eddy_udf_window_processor connects the generated exports to the SDK (package eddy).
package export_eddy_udf_window_processor

import (
	"eddy"
	"eddy/wit/imports/eddy_udf_types"
	"eddy/wit/imports/eddy_udf_window_processor"
	witTypes "eddy/witrt/types"
)

func ProcessWindows(windows []eddy_udf_window_processor.WindowContents) witTypes.Result[eddy_udf_types.Outputs, string] {
	inputs := make([]eddy.WindowInput, len(windows))
	for i, w := range windows {
		in := &inputs[i]
		if w.Key.Tag() == witTypes.OptionSome {
			in.Key = w.Key.Some()
		}
		if w.Window.Tag() == eddy_udf_types.Window_Time {
			in.Start, in.End = w.Window.Time().Start, w.Window.Time().End
		} else {
			in.Global = true
		}
		in.Elements = w.Elements
	}
	var out eddy.Output
	if err := eddy.RunWindows(inputs, &out); err != nil {
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
