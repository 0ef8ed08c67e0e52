package eddy

// Entry points for the SDK's export packages (guest-sdk/go/glue), one per call of udf.wit: they decode, run the
// registered function and encode. Authors do not call them.

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// The component model forbids calling an import while the host allocates arguments (cabi_realloc), and a Go
// collection reads the clock: automatic collection stays off, and Guard collects between calls instead.
func init() { debug.SetGCPercent(-1) }

// Collect after this many bytes were allocated since the last collection.
const collectEvery = 8 << 20

var (
	allocSample   = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocatedAtGC uint64
)

func collect() {
	metrics.Read(allocSample)
	if allocSample[0].Value.Kind() != metrics.KindUint64 {
		runtime.GC()
		return
	}
	if now := allocSample[0].Value.Uint64(); now-allocatedAtGC >= collectEvery {
		runtime.GC()
		allocatedAtGC = now
	}
}

// Guard runs one call from the host: a panic becomes the call's error, and garbage is collected afterwards.
func Guard(call func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		collect()
	}()
	return call()
}

// RunInit runs lifecycle.init.
func RunInit(cfg string) error {
	config = cfg
	if initFn == nil {
		return nil
	}
	return Guard(func() error { return initFn(cfg) })
}

func decode(input []byte) ([]Record, error) { return DecodeBatch(input) }

// RunMap runs mapper.map-batch.
func RunMap(input []byte) (out []byte, err error) {
	err = Guard(func() error {
		records, err := decode(input)
		if err != nil {
			return err
		}
		if mapFn == nil {
			return errNoFunction
		}
		var w BatchWriter
		for _, r := range records {
			o, err := mapFn(r)
			if err != nil {
				return err
			}
			w.Push(o)
		}
		out = w.Finish()
		return nil
	})
	return out, err
}

// RunFilter runs filter.filter-batch.
func RunFilter(input []byte) (keep []bool, err error) {
	err = Guard(func() error {
		records, err := decode(input)
		if err != nil {
			return err
		}
		if filterFn == nil {
			return errNoFunction
		}
		keep = make([]bool, len(records))
		for i, r := range records {
			if keep[i], err = filterFn(r); err != nil {
				return err
			}
		}
		return nil
	})
	return keep, err
}

// RunFlatMap runs flat-mapper.flat-map-batch.
func RunFlatMap(input []byte) (out []byte, err error) {
	err = Guard(func() error {
		records, err := decode(input)
		if err != nil {
			return err
		}
		if flatMapFn == nil {
			return errNoFunction
		}
		var o Output
		for _, r := range records {
			if err := flatMapFn(r, &o); err != nil {
				return err
			}
		}
		out = o.main.Finish()
		return nil
	})
	return out, err
}

// RunSelectKeys runs key-selector.select-keys.
func RunSelectKeys(input []byte) (out []byte, err error) {
	err = Guard(func() error {
		records, err := decode(input)
		if err != nil {
			return err
		}
		if keyFn == nil {
			return errNoFunction
		}
		var w BatchWriter
		for _, r := range records {
			key, err := keyFn(r)
			if err != nil {
				return err
			}
			w.Push(Record{Timestamp: r.Timestamp, Key: key})
		}
		out = w.Finish()
		return nil
	})
	return out, err
}

// RunExtractTimestamps runs timestamp-assigner.extract-timestamps.
func RunExtractTimestamps(input []byte) (out []int64, err error) {
	err = Guard(func() error {
		records, err := decode(input)
		if err != nil {
			return err
		}
		if timestampFn == nil {
			return errNoFunction
		}
		out = make([]int64, len(records))
		for i, r := range records {
			if out[i], err = timestampFn(r); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// RunCreateAccumulator runs aggregator.create-accumulator.
func RunCreateAccumulator() (acc []byte, err error) {
	err = Guard(func() error {
		if aggregator == nil || aggregator.Create == nil {
			return errNoFunction
		}
		acc, err = aggregator.Create()
		return err
	})
	return acc, err
}

// accumulators decodes accumulators travelling as the values of a batch.
func accumulators(wire []byte) ([][]byte, error) {
	records, err := decode(wire)
	if err != nil {
		return nil, err
	}
	accs := make([][]byte, len(records))
	for i, r := range records {
		accs[i] = r.Value
	}
	return accs, nil
}

func encodeValues(values [][]byte) []byte {
	var w BatchWriter
	for _, v := range values {
		w.Push(Record{Value: v})
	}
	return w.Finish()
}

func target(targets []uint32, i, n int) (int, error) {
	if i >= len(targets) || int(targets[i]) >= n {
		return 0, fmt.Errorf("input %d has no accumulator (targets %d, accumulators %d)", i, len(targets), n)
	}
	return int(targets[i]), nil
}

// RunAggregate runs aggregator.add (merge false) or aggregator.merge (merge true).
func RunAggregate(accWire, inWire []byte, targets []uint32, merge bool) (out []byte, err error) {
	err = Guard(func() error {
		if aggregator == nil || aggregator.Add == nil || (merge && aggregator.Merge == nil) {
			return errNoFunction
		}
		accs, err := accumulators(accWire)
		if err != nil {
			return err
		}
		inputs, err := decode(inWire)
		if err != nil {
			return err
		}
		for i, in := range inputs {
			t, err := target(targets, i, len(accs))
			if err != nil {
				return err
			}
			if merge {
				accs[t], err = aggregator.Merge(accs[t], in.Value)
			} else {
				accs[t], err = aggregator.Add(accs[t], in)
			}
			if err != nil {
				return err
			}
		}
		out = encodeValues(accs)
		return nil
	})
	return out, err
}

// RunGetResult runs aggregator.get-result.
func RunGetResult(accWire []byte) (out []byte, err error) {
	err = Guard(func() error {
		if aggregator == nil || aggregator.Result == nil {
			return errNoFunction
		}
		accs, err := accumulators(accWire)
		if err != nil {
			return err
		}
		for i := range accs {
			if accs[i], err = aggregator.Result(accs[i]); err != nil {
				return err
			}
		}
		out = encodeValues(accs)
		return nil
	})
	return out, err
}

// RunReduce runs reducer.reduce.
func RunReduce(accWire, inWire []byte, targets []uint32) (out []byte, err error) {
	err = Guard(func() error {
		if reduceFn == nil {
			return errNoFunction
		}
		accs, err := decode(accWire)
		if err != nil {
			return err
		}
		inputs, err := decode(inWire)
		if err != nil {
			return err
		}
		for i, in := range inputs {
			t, err := target(targets, i, len(accs))
			if err != nil {
				return err
			}
			if accs[t], err = reduceFn(accs[t], in); err != nil {
				return err
			}
		}
		out = EncodeBatch(accs)
		return nil
	})
	return out, err
}

// SideBatch is the records of one side output, encoded.
type SideBatch struct {
	Tag     string
	Records []byte
}

// Finish encodes what o collected.
func (o *Output) Finish() (main []byte, side []SideBatch) {
	for i := range o.side {
		side = append(side, SideBatch{Tag: o.side[i].tag, Records: o.side[i].writer.Finish()})
	}
	return o.main.Finish(), side
}

// WindowInput is a window as the host sends it, with its elements still encoded.
type WindowInput struct {
	Window
	Elements []byte
}

// RunWindows runs window-processor.process-windows.
func RunWindows(windows []WindowInput, o *Output) error {
	return Guard(func() error {
		if windowFn == nil {
			return errNoFunction
		}
		for _, w := range windows {
			records, err := decode(w.Elements)
			if err != nil {
				return err
			}
			w.Window.Records = records
			if err := windowFn(w.Window, o); err != nil {
				return err
			}
		}
		return nil
	})
}
