// Package runtime is the support code that `wit-bindgen go` output calls: resource handles, memory the canonical
// ABI writes into, and the `cabi_realloc` export. The SDK provides its own (see package types for why).
package runtime

import (
	"runtime"
	"unsafe"
)

// Handle owns a resource handle of the host's; 0 means none.
type Handle struct{ value int32 }

// MakeHandle wraps a handle the host returned.
func MakeHandle(value int32) *Handle {
	if value == 0 {
		panic("nil resource handle")
	}
	return &Handle{value}
}

// Use returns the handle for a call that borrows it.
func (h *Handle) Use() int32 {
	if h.value == 0 {
		panic("resource used after it was dropped")
	}
	return h.value
}

// Take returns the handle and forgets it, for a call that consumes it.
func (h *Handle) Take() int32 {
	value := h.Use()
	h.value = 0
	return value
}

// TakeOrNil is Take, with 0 for a handle already taken.
func (h *Handle) TakeOrNil() int32 {
	value := h.value
	h.value = 0
	return value
}

// Set stores a handle into an empty Handle.
func (h *Handle) Set(value int32) {
	if value == 0 || h.value != 0 {
		panic("bad resource handle")
	}
	h.value = value
}

// Allocate returns size bytes aligned to align from the Go heap, pinned by pinner so that the collector neither
// moves nor frees them while the host reads them.
func Allocate(pinner *runtime.Pinner, size, align uintptr) unsafe.Pointer {
	if size == 0 {
		return nil
	}
	// Allocating slices of a type of the alignment gives the alignment.
	var p unsafe.Pointer
	switch align {
	case 1:
		p = unsafe.Pointer(unsafe.SliceData(make([]uint8, size)))
	case 2:
		p = unsafe.Pointer(unsafe.SliceData(make([]uint16, (size+1)/2)))
	case 4:
		p = unsafe.Pointer(unsafe.SliceData(make([]uint32, (size+3)/4)))
	default:
		p = unsafe.Pointer(unsafe.SliceData(make([]uint64, (size+7)/8)))
	}
	pinner.Pin(p)
	return p
}

// What cabi_realloc hands the host for arguments: kept until the export has read them.
var argumentPinner runtime.Pinner

// Unpin releases the memory of the last call's arguments; the generated exports call it once they hold them.
func Unpin() { argumentPinner.Unpin() }

//go:linkname sbrk runtime.sbrk
func sbrk(n uintptr) unsafe.Pointer

// The WASI adapter allocates its stack through cabi_realloc on its first call, which may come while the Go runtime
// is still starting: until package initialisation has run, take memory past the heap instead.
var started = false

func init() { started = true }

// cabi_realloc gives the host memory for arguments. The component model forbids calling an import from here, and
// a Go collection reads the clock: the SDK turns automatic collection off (eddy.collect runs it between calls), so
// an allocation here never starts one.
//
//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, newSize uintptr) unsafe.Pointer {
	if old != nil || oldSize != 0 {
		panic("cabi_realloc: reallocation is not supported")
	}
	if started {
		return Allocate(&argumentPinner, newSize, align)
	}
	size := (newSize + align - 1) &^ (align - 1)
	raw := sbrk(size + align)
	return unsafe.Pointer((uintptr(raw) + align - 1) &^ (align - 1))
}
