// Package process writes Eddy process functions (world processor-udf): per record, with keyed state, timers and
// side outputs. Register them in an init function with Process, OnTimer and DeclareStates.
package process

import (
	"errors"

	"eddy"
	"eddy/wit/imports/eddy_udf_context"
	ks "eddy/wit/imports/eddy_udf_keyed_state"
	witTypes "eddy/witrt/types"
)

// Timer is a timer that fired: the key it was registered for (nil in a non-keyed operator), its timestamp and
// clock.
type Timer struct {
	Key            []byte
	Timestamp      int64
	ProcessingTime bool
}

// Context is what a process function's call sees: which input (0, or 1 for a co-process function's second
// input), the output, state of the current key, time and timers. It is valid during the call only.
type Context struct {
	Input uint32
	Out   *eddy.Output
	open  []*handle
}

// TTL is a state's time-to-live, measured in processing time.
type TTL struct {
	TimeToLiveMs uint64
	// UpdateOnRead restarts the time-to-live on reads too (Flink's OnReadAndWrite).
	UpdateOnRead bool
	// ReturnExpired returns expired entries until cleanup removes them.
	ReturnExpired bool
}

// Kind is the shape of a state.
type Kind uint8

// The kinds of state.
const (
	Value Kind = iota
	List
	Map
)

// Declaration names a state the function opens, for DeclareStates.
type Declaration struct {
	Name string
	Kind Kind
	TTL  *TTL
}

var (
	processFn  func(*Context, eddy.Record) error
	timerFn    func(*Context, Timer) error
	declared   []Declaration
	declaring  bool
	errNoState = errors.New("state handle already released: open it again for this record")
)

// Process registers the function called per record.
func Process(f func(*Context, eddy.Record) error) { processFn = f }

// OnTimer registers the function called per fired timer (optional).
func OnTimer(f func(*Context, Timer) error) { timerFn = f }

// DeclareStates declares every state the function opens: the host then checks upgrades against them.
func DeclareStates(states ...Declaration) { declared, declaring = states, true }

type handle struct {
	name  string
	kind  Kind
	value *ks.ValueState
	list  *ks.ListState
	mp    *ks.MapState
}

func descriptor(name string, ttl *TTL) ks.StateDescriptor {
	d := ks.StateDescriptor{Name: name, Ttl: witTypes.None[ks.Ttl]()}
	if ttl != nil {
		t := ks.Ttl{TimeToLiveMs: ttl.TimeToLiveMs}
		if ttl.UpdateOnRead {
			t.Update = ks.TtlUpdate_OnReadAndWrite
		}
		if ttl.ReturnExpired {
			t.Visibility = ks.TtlVisibility_ReturnExpiredIfNotCleanedUp
		}
		d.Ttl = witTypes.Some(t)
	}
	return d
}

func unwrap[T any](r witTypes.Result[T, string]) (T, error) {
	if r.Tag() == witTypes.ResultErr {
		var zero T
		return zero, errors.New(r.Err())
	}
	return r.Ok(), nil
}

func check(r witTypes.Result[witTypes.Unit, string]) error {
	_, err := unwrap(r)
	return err
}

// opened returns the handle of state name opened for the current record, opening it on first use.
func (c *Context) opened(name string, kind Kind, ttl *TTL) (*handle, error) {
	for _, h := range c.open {
		if h.name == name && h.kind == kind {
			return h, nil
		}
	}
	h := &handle{name: name, kind: kind}
	var err error
	switch kind {
	case Value:
		h.value, err = unwrap(ks.ValueStateOpen(descriptor(name, ttl)))
	case List:
		h.list, err = unwrap(ks.ListStateOpen(descriptor(name, ttl)))
	default:
		h.mp, err = unwrap(ks.MapStateOpen(descriptor(name, ttl)))
	}
	if err != nil {
		return nil, err
	}
	c.open = append(c.open, h)
	return h, nil
}

// release drops the handles of the record or timer just handled: each is bound to its key.
func (c *Context) release() {
	for _, h := range c.open {
		switch {
		case h.value != nil:
			h.value.Drop()
		case h.list != nil:
			h.list.Drop()
		case h.mp != nil:
			h.mp.Drop()
		}
	}
	c.open = c.open[:0]
}

// ValueState is a single value per key.
type ValueState struct{ h *handle }

// ListState is a list of values per key.
type ListState struct{ h *handle }

// MapState is a map of user keys to values per key.
type MapState struct{ h *handle }

// ValueState opens state name (ttl may be nil) for the current key. The name is how checkpoints and savepoints
// find the state: keep it stable.
func (c *Context) ValueState(name string, ttl *TTL) (ValueState, error) {
	h, err := c.opened(name, Value, ttl)
	return ValueState{h}, err
}

// ListState opens list state name for the current key.
func (c *Context) ListState(name string, ttl *TTL) (ListState, error) {
	h, err := c.opened(name, List, ttl)
	return ListState{h}, err
}

// MapState opens map state name for the current key.
func (c *Context) MapState(name string, ttl *TTL) (MapState, error) {
	h, err := c.opened(name, Map, ttl)
	return MapState{h}, err
}

// Get returns the value, or nil and false when unset or expired.
func (s ValueState) Get() ([]byte, bool, error) {
	if s.h == nil || s.h.value == nil {
		return nil, false, errNoState
	}
	v, err := unwrap(s.h.value.Get())
	if err != nil || v.Tag() == witTypes.OptionNone {
		return nil, false, err
	}
	return v.Some(), true, nil
}

// Set replaces the value.
func (s ValueState) Set(value []byte) error { return check(s.h.value.Set(value)) }

// Clear removes the value.
func (s ValueState) Clear() error { return check(s.h.value.Clear()) }

// Get returns all elements, oldest first.
func (s ListState) Get() ([][]byte, error) { return unwrap(s.h.list.Get()) }

// Add appends one element.
func (s ListState) Add(value []byte) error { return check(s.h.list.Add(value)) }

// Update replaces all elements.
func (s ListState) Update(values [][]byte) error { return check(s.h.list.Update(values)) }

// Clear removes all elements.
func (s ListState) Clear() error { return check(s.h.list.Clear()) }

// Get returns the value under key.
func (s MapState) Get(key []byte) ([]byte, bool, error) {
	v, err := unwrap(s.h.mp.Get(key))
	if err != nil || v.Tag() == witTypes.OptionNone {
		return nil, false, err
	}
	return v.Some(), true, nil
}

// Put stores value under key.
func (s MapState) Put(key, value []byte) error { return check(s.h.mp.Put(key, value)) }

// Remove removes the entry under key.
func (s MapState) Remove(key []byte) error { return check(s.h.mp.Remove(key)) }

// Contains says whether an entry exists under key.
func (s MapState) Contains(key []byte) (bool, error) { return unwrap(s.h.mp.Contains(key)) }

// Entry is one entry of a map state.
type Entry struct{ Key, Value []byte }

// Entries returns all entries, ordered by key bytes.
func (s MapState) Entries() ([]Entry, error) {
	all, err := unwrap(s.h.mp.Entries())
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, len(all))
	for i, e := range all {
		entries[i] = Entry{e.F0, e.F1}
	}
	return entries, nil
}

// IsEmpty says whether the map has no entries.
func (s MapState) IsEmpty() (bool, error) { return unwrap(s.h.mp.IsEmpty()) }

// Clear removes every entry.
func (s MapState) Clear() error { return check(s.h.mp.Clear()) }

// CurrentKey is the current key, nil when the operator is not keyed.
func (c *Context) CurrentKey() []byte {
	k := eddy_udf_context.CurrentKey()
	if k.Tag() == witTypes.OptionNone {
		return nil
	}
	return k.Some()
}

// Watermark is the operator's event-time watermark (very negative before the first one).
func (c *Context) Watermark() int64 { return eddy_udf_context.CurrentWatermark() }

// ProcessingTime is the host's wall clock, in milliseconds since the Unix epoch.
func (c *Context) ProcessingTime() int64 { return eddy_udf_context.CurrentProcessingTime() }

// RegisterEventTimeTimer registers an event-time timer for the current key; one exists per key and timestamp.
func (c *Context) RegisterEventTimeTimer(ts int64) error {
	return check(eddy_udf_context.RegisterEventTimeTimer(ts))
}

// DeleteEventTimeTimer deletes the current key's event-time timer at ts, if any.
func (c *Context) DeleteEventTimeTimer(ts int64) error {
	return check(eddy_udf_context.DeleteEventTimeTimer(ts))
}

// RegisterProcessingTimeTimer registers a processing-time timer for the current key.
func (c *Context) RegisterProcessingTimeTimer(ts int64) error {
	return check(eddy_udf_context.RegisterProcessingTimeTimer(ts))
}

// DeleteProcessingTimeTimer deletes the current key's processing-time timer at ts, if any.
func (c *Context) DeleteProcessingTimeTimer(ts int64) error {
	return check(eddy_udf_context.DeleteProcessingTimeTimer(ts))
}

// RunProcess runs processor.process; for the SDK's export package.
func RunProcess(input uint32, wire []byte, out *eddy.Output) error {
	return eddy.Guard(func() error {
		records, err := eddy.DecodeBatch(wire)
		if err != nil {
			return err
		}
		if processFn == nil {
			return errors.New("the module registers no process function (process.Process)")
		}
		ctx := &Context{Input: input, Out: out}
		defer ctx.release()
		for i, r := range records {
			if err := check(eddy_udf_context.Enter(uint32(i))); err != nil {
				return err
			}
			err := processFn(ctx, r)
			ctx.release()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// RunTimers runs processor.on-timers; for the SDK's export package.
func RunTimers(timers []Timer, out *eddy.Output) error {
	return eddy.Guard(func() error {
		if timerFn == nil {
			return nil
		}
		ctx := &Context{Out: out}
		defer ctx.release()
		for i, t := range timers {
			if err := check(eddy_udf_context.Enter(uint32(i))); err != nil {
				return err
			}
			err := timerFn(ctx, t)
			ctx.release()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Declared returns the declared states; for the SDK's export package.
func Declared() ([]Declaration, bool) { return declared, declaring }
