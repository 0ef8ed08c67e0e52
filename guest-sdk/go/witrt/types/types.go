// Package types holds the generic result, option and tuple types that `wit-bindgen go` output refers to. The
// module it would import for them is not available to every build machine, so the SDK provides its own; build.sh
// points the generated code here.
package types

// Unit is the empty payload of `result<_, E>`.
type Unit struct{}

// The tags of a Result.
const (
	ResultOk  = 0
	ResultErr = 1
)

// Result is a WIT `result<T, E>`.
type Result[T any, E any] struct {
	tag uint8
	ok  T
	err E
}

// Ok makes a successful Result.
func Ok[T any, E any](value T) Result[T, E] { return Result[T, E]{tag: ResultOk, ok: value} }

// Err makes a failed Result.
func Err[T any, E any](err E) Result[T, E] { return Result[T, E]{tag: ResultErr, err: err} }

// Tag is ResultOk or ResultErr.
func (r Result[T, E]) Tag() uint8 { return r.tag }

// Ok is the value of a successful Result; it panics on an error.
func (r Result[T, E]) Ok() T {
	if r.tag != ResultOk {
		panic("Ok() of an error result")
	}
	return r.ok
}

// Err is the error of a failed Result; it panics on success.
func (r Result[T, E]) Err() E {
	if r.tag != ResultErr {
		panic("Err() of a successful result")
	}
	return r.err
}

// The tags of an Option.
const (
	OptionNone = 0
	OptionSome = 1
)

// Option is a WIT `option<T>`.
type Option[T any] struct {
	tag   uint8
	value T
}

// None makes an empty Option.
func None[T any]() Option[T] { return Option[T]{} }

// Some makes an Option holding value.
func Some[T any](value T) Option[T] { return Option[T]{tag: OptionSome, value: value} }

// Tag is OptionNone or OptionSome.
func (o Option[T]) Tag() uint8 { return o.tag }

// Some is the value; it panics on None.
func (o Option[T]) Some() T {
	if o.tag != OptionSome {
		panic("Some() of an empty option")
	}
	return o.value
}

// IsSome says whether the Option holds a value.
func (o Option[T]) IsSome() bool { return o.tag == OptionSome }

// Tuple2 is a WIT `tuple<A, B>`.
type Tuple2[A any, B any] struct {
	F0 A
	F1 B
}
