// Flink's fraud-detection walkthrough (world `processor-udf`), like udfs/rust/fraud-detection: per account, a
// transaction under 1.00 followed within one minute of event time by one over 500.00 raises an alert. The small
// transaction opens a suspicion window that an event-time timer closes; meanwhile value state holds the small
// transaction, map state counts merchants and list state keeps the amounts, which the alert reports.
//
// The states are encoded as the Rust example encodes them (`small` as JSON {"time","amount"}, merchant counts as
// u64 and amounts as f64, little-endian), so either module can take over the other's savepoint.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"eddy"
	"eddy/process"
)

const (
	small  = 1.00
	large  = 500.00
	minute = 60000
	// Amounts an alert reports at most.
	recent = 10
)

type transaction struct {
	Account  *string  `json:"account"`
	Merchant *string  `json:"merchant"`
	Amount   *float64 `json:"amount"`
}

type smallTx struct {
	Time   *float64 `json:"time"`
	Amount *float64 `json:"amount"`
}

func readSmall(ctx *process.Context) (present bool, time int64, amount float64, err error) {
	state, err := ctx.ValueState("small", nil)
	if err != nil {
		return false, 0, 0, err
	}
	bytes, found, err := state.Get()
	if err != nil || !found {
		return false, 0, 0, err
	}
	var s smallTx
	if json.Unmarshal(bytes, &s) != nil || s.Time == nil || s.Amount == nil {
		return false, 0, 0, errors.New(`state ` + "`small`" + ` is not {"time", "amount"}`)
	}
	return true, int64(*s.Time), *s.Amount, nil
}

func writeSmall(ctx *process.Context, time int64, amount float64) error {
	v := []byte(`{"time":`)
	v = strconv.AppendInt(v, time, 10)
	v = append(v, `,"amount":`...)
	v = eddy.AppendJSONFloat(v, amount)
	v = append(v, '}')
	state, err := ctx.ValueState("small", nil)
	if err != nil {
		return err
	}
	return state.Set(v)
}

// clear forgets the suspicion window of the current account.
func clear(ctx *process.Context) error {
	value, err := ctx.ValueState("small", nil)
	if err != nil {
		return err
	}
	if err := value.Clear(); err != nil {
		return err
	}
	merchants, err := ctx.MapState("merchants", nil)
	if err != nil {
		return err
	}
	if err := merchants.Clear(); err != nil {
		return err
	}
	amounts, err := ctx.ListState("amounts", nil)
	if err != nil {
		return err
	}
	return amounts.Clear()
}

// remember counts the transaction's merchant and keeps its amount.
func remember(ctx *process.Context, merchant string, amount float64) error {
	merchants, err := ctx.MapState("merchants", nil)
	if err != nil {
		return err
	}
	seen, found, err := merchants.Get([]byte(merchant))
	if err != nil {
		return err
	}
	var count uint64 = 1
	if found && len(seen) >= 8 {
		count += binary.LittleEndian.Uint64(seen)
	}
	if err := merchants.Put([]byte(merchant), binary.LittleEndian.AppendUint64(nil, count)); err != nil {
		return err
	}
	amounts, err := ctx.ListState("amounts", nil)
	if err != nil {
		return err
	}
	if err := amounts.Add(binary.LittleEndian.AppendUint64(nil, math.Float64bits(amount))); err != nil {
		return err
	}
	all, err := amounts.Get()
	if err != nil {
		return err
	}
	if len(all) > recent {
		return amounts.Update(all[len(all)-recent:])
	}
	return nil
}

func alert(ctx *process.Context, in eddy.Record, account string, amount float64, smallTime int64, smallAmount float64) error {
	list, err := ctx.ListState("amounts", nil)
	if err != nil {
		return err
	}
	amounts, err := list.Get()
	if err != nil {
		return err
	}
	m, err := ctx.MapState("merchants", nil)
	if err != nil {
		return err
	}
	merchants, err := m.Entries()
	if err != nil {
		return err
	}
	// Keys in sorted order, as serde_json writes a map; entries come ordered by key bytes.
	v := []byte(`{"account":`)
	v = eddy.AppendJSONString(v, account)
	v = append(v, `,"large_amount":`...)
	v = eddy.AppendJSONFloat(v, amount)
	v = append(v, `,"large_time":`...)
	v = strconv.AppendInt(v, in.Timestamp, 10)
	v = append(v, `,"merchants":{`...)
	for i, e := range merchants {
		if i > 0 {
			v = append(v, ',')
		}
		v = eddy.AppendJSONString(v, string(e.Key))
		v = append(v, ':')
		var n uint64
		if len(e.Value) >= 8 {
			n = binary.LittleEndian.Uint64(e.Value)
		}
		v = strconv.AppendUint(v, n, 10)
	}
	v = append(v, `},"recent_amounts":[`...)
	first := true
	for _, a := range amounts {
		if len(a) < 8 {
			continue
		}
		if !first {
			v = append(v, ',')
		}
		first = false
		v = eddy.AppendJSONFloat(v, math.Float64frombits(binary.LittleEndian.Uint64(a)))
	}
	v = append(v, `],"small_amount":`...)
	v = eddy.AppendJSONFloat(v, smallAmount)
	v = append(v, `,"small_time":`...)
	v = strconv.AppendInt(v, smallTime, 10)
	v = append(v, '}')
	out := in
	out.Value = v
	ctx.Out.Emit(out)
	return nil
}

func onTransaction(ctx *process.Context, in eddy.Record) error {
	var tx transaction
	if json.Unmarshal(in.Value, &tx) != nil || tx.Account == nil || tx.Merchant == nil || tx.Amount == nil {
		return errors.New(`a transaction must be {"account", "merchant", "amount"}`)
	}
	present, smallTime, smallAmount, err := readSmall(ctx)
	if err != nil {
		return err
	}
	if present && in.Timestamp >= smallTime+minute {
		// The window is over in event time, but the watermark has not reached its timer yet.
		if err := ctx.DeleteEventTimeTimer(smallTime + minute); err != nil {
			return err
		}
		if err := clear(ctx); err != nil {
			return err
		}
		present = false
	}
	amount := *tx.Amount
	if amount < small {
		if present {
			if err := ctx.DeleteEventTimeTimer(smallTime + minute); err != nil {
				return err
			}
		}
		if err := writeSmall(ctx, in.Timestamp, amount); err != nil {
			return err
		}
		if err := ctx.RegisterEventTimeTimer(in.Timestamp + minute); err != nil {
			return err
		}
		return remember(ctx, *tx.Merchant, amount)
	}
	// Only what follows a small transaction is suspicious.
	if !present || in.Timestamp < smallTime {
		return nil
	}
	if err := remember(ctx, *tx.Merchant, amount); err != nil {
		return err
	}
	if amount > large {
		if err := alert(ctx, in, *tx.Account, amount, smallTime, smallAmount); err != nil {
			return err
		}
		if err := ctx.DeleteEventTimeTimer(smallTime + minute); err != nil {
			return err
		}
		return clear(ctx)
	}
	return nil
}

func init() {
	process.DeclareStates(
		process.Declaration{Name: "small", Kind: process.Value},
		process.Declaration{Name: "merchants", Kind: process.Map},
		process.Declaration{Name: "amounts", Kind: process.List},
	)
	process.Process(onTransaction)
	// A minute passed since the small transaction: a large one no longer alerts.
	process.OnTimer(func(ctx *process.Context, _ process.Timer) error { return clear(ctx) })
}

func main() {}
