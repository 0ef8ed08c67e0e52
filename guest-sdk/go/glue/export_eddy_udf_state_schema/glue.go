// Package export_eddy_udf_state_schema connects the generated exports to the SDK (package eddy/process).
package export_eddy_udf_state_schema

import (
	"eddy/process"
	"eddy/wit/imports/eddy_udf_keyed_state"
	"eddy/wit/imports/eddy_udf_state_schema"
	witTypes "eddy/witrt/types"
)

func DeclaredStates() witTypes.Option[[]eddy_udf_state_schema.StateDeclaration] {
	states, declared := process.Declared()
	if !declared {
		return witTypes.None[[]eddy_udf_state_schema.StateDeclaration]()
	}
	out := make([]eddy_udf_state_schema.StateDeclaration, len(states))
	for i, s := range states {
		out[i] = eddy_udf_state_schema.StateDeclaration{Name: s.Name, Kind: uint8(s.Kind), Ttl: witTypes.None[eddy_udf_keyed_state.Ttl]()}
		if t := s.TTL; t != nil {
			ttl := eddy_udf_keyed_state.Ttl{TimeToLiveMs: t.TimeToLiveMs}
			if t.UpdateOnRead {
				ttl.Update = eddy_udf_keyed_state.TtlUpdate_OnReadAndWrite
			}
			if t.ReturnExpired {
				ttl.Visibility = eddy_udf_keyed_state.TtlVisibility_ReturnExpiredIfNotCleanedUp
			}
			out[i].Ttl = witTypes.Some(ttl)
		}
	}
	return witTypes.Some(out)
}
