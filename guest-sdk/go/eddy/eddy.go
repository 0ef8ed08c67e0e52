// Package eddy writes Eddy user functions in Go: register the functions of one kind in an init function, and the
// SDK decodes the host's record batches, calls them once per record (or window) and encodes what they return.
// Process functions (keyed state, timers) are in package eddy/process. README.md beside this folder has examples.
package eddy

import (
	"errors"
	"fmt"

	"eddy/wit/imports/eddy_udf_log"
)

// Output collects the records a flat-map, process or window function emits.
type Output struct {
	main BatchWriter
	side []sideOutput
}

type sideOutput struct {
	tag    string
	writer BatchWriter
}

// Emit sends a record to the main output.
func (o *Output) Emit(r Record) { o.main.Push(r) }

// EmitSide sends a record to side output tag (1 to 100 ASCII letters, digits, '-' or '_'), which the job spec
// routes with `input: <operator uid>.<tag>`.
func (o *Output) EmitSide(tag string, r Record) {
	for i := range o.side {
		if o.side[i].tag == tag {
			o.side[i].writer.Push(r)
			return
		}
	}
	o.side = append(o.side, sideOutput{tag: tag})
	o.side[len(o.side)-1].writer.Push(r)
}

// Aggregator is an incremental window aggregation; accumulators are bytes that the host keeps.
type Aggregator struct {
	Create func() ([]byte, error)
	Add    func(acc []byte, in Record) ([]byte, error)
	Merge  func(acc, other []byte) ([]byte, error)
	Result func(acc []byte) ([]byte, error)
}

// Window is a window that fired: its key (nil for a non-keyed window), its bounds (start <= ts < end; Global
// for the global window) and its records, or the one result of the aggregate or reduce function before it.
type Window struct {
	Key        []byte
	Global     bool
	Start, End int64
	Records    []Record
}

// The functions registered, at most one per kind.
var (
	initFn      func(config string) error
	mapFn       func(Record) (Record, error)
	filterFn    func(Record) (bool, error)
	flatMapFn   func(Record, *Output) error
	keyFn       func(Record) ([]byte, error)
	timestampFn func(Record) (int64, error)
	aggregator  *Aggregator
	reduceFn    func(acc, in Record) (Record, error)
	windowFn    func(Window, *Output) error
	config      = "null"
)

// OnInit registers a function that runs once per instance with the operator's config (JSON text, "null" when
// none); its error fails the job's start.
func OnInit(f func(config string) error) { initFn = f }

// Config is the operator's config from the job spec, as JSON text ("null" when none).
func Config() string { return config }

// Map registers a map function (world mapper-udf): one record out per record in.
func Map(f func(Record) (Record, error)) { mapFn = f }

// Filter registers a filter (world filter-udf): true keeps the record.
func Filter(f func(Record) (bool, error)) { filterFn = f }

// FlatMap registers a flat-map function (world flat-mapper-udf): emit any number of records per record.
func FlatMap(f func(Record, *Output) error) { flatMapFn = f }

// SelectKey registers a key selector (world key-selector-udf): the key to partition by (nil for none).
func SelectKey(f func(Record) ([]byte, error)) { keyFn = f }

// ExtractTimestamp registers a timestamp assigner (world timestamp-assigner-udf).
func ExtractTimestamp(f func(Record) (int64, error)) { timestampFn = f }

// Aggregate registers an aggregate function (world aggregator-udf).
func Aggregate(a Aggregator) { aggregator = &a }

// Reduce registers a reduce function (world reducer-udf): folds in into acc and returns the new accumulator.
func Reduce(f func(acc, in Record) (Record, error)) { reduceFn = f }

// ProcessWindows registers a process-window function (world window-processor-udf).
func ProcessWindows(f func(Window, *Output) error) { windowFn = f }

// Log levels.
const (
	Trace = eddy_udf_log.Level_Trace
	Debug = eddy_udf_log.Level_Debug
	Info  = eddy_udf_log.Level_Info
	Warn  = eddy_udf_log.Level_Warn
	Error = eddy_udf_log.Level_Error
)

// Logf writes a line to the server's log; a failure shows the instance's last lines.
func Logf(level uint8, format string, args ...any) {
	eddy_udf_log.Write(level, fmt.Sprintf(format, args...))
}

var errNoFunction = errors.New("the module registers no function of this kind (see guest-sdk/go/README.md)")
