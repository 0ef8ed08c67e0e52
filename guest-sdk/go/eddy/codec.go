package eddy

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Record is one record of a batch. Key nil means no key; a non-nil empty Key is an empty key. The slices of a
// decoded record borrow from the host's batch and stay valid for the call.
type Record struct {
	Timestamp int64 // event time, milliseconds since the Unix epoch
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Header is one record header.
type Header struct {
	Name  string
	Value []byte
}

// Header returns the value of the first header called name.
func (r *Record) Header(name string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return nil, false
}

const (
	rowSize = 32
	noKey   = 0xFFFF_FFFF
)

var le = binary.LittleEndian

// DecodeBatch reads a batch in Eddy's encoding (wit/README.md), checking every span.
func DecodeBatch(wire []byte) ([]Record, error) {
	if len(wire) < 8 {
		return nil, errors.New("invalid record batch: shorter than its header")
	}
	count := uint64(le.Uint32(wire))
	if flags := le.Uint32(wire[4:]); flags != 0 {
		return nil, fmt.Errorf("invalid record batch: flags %d", flags)
	}
	start := 8 + rowSize*count
	if uint64(len(wire)) < start {
		return nil, fmt.Errorf("invalid record batch: %d rows do not fit", count)
	}
	data := wire[start:]
	span := func(off, n uint32) ([]byte, error) {
		if uint64(off)+uint64(n) > uint64(len(data)) {
			return nil, fmt.Errorf("invalid record batch: span %d+%d outside the data area", off, n)
		}
		return data[off : off+n : off+n], nil
	}
	records := make([]Record, count)
	for i := range records {
		row := wire[8+rowSize*i:]
		r := &records[i]
		r.Timestamp = int64(le.Uint64(row))
		var err error
		if keyLen := le.Uint32(row[12:]); keyLen != noKey {
			if r.Key, err = span(le.Uint32(row[8:]), keyLen); err != nil {
				return nil, err
			}
		}
		if r.Value, err = span(le.Uint32(row[16:]), le.Uint32(row[20:])); err != nil {
			return nil, err
		}
		if n := le.Uint32(row[28:]); n != 0 {
			block, err := span(le.Uint32(row[24:]), n)
			if err != nil {
				return nil, err
			}
			if r.Headers, err = decodeHeaders(block); err != nil {
				return nil, err
			}
		}
	}
	return records, nil
}

func decodeHeaders(b []byte) ([]Header, error) {
	bad := errors.New("invalid record batch: malformed headers")
	if len(b) < 2 {
		return nil, bad
	}
	n := int(le.Uint16(b))
	b = b[2:]
	headers := make([]Header, 0, n)
	for range n {
		if len(b) < 2 {
			return nil, bad
		}
		nameLen := int(le.Uint16(b))
		if len(b) < 2+nameLen+4 {
			return nil, bad
		}
		name := string(b[2 : 2+nameLen])
		b = b[2+nameLen:]
		valueLen := uint64(le.Uint32(b))
		if uint64(len(b)-4) < valueLen {
			return nil, bad
		}
		headers = append(headers, Header{Name: name, Value: b[4 : 4+valueLen]})
		b = b[4+valueLen:]
	}
	return headers, nil
}

// BatchWriter builds a batch: Push records, then Finish.
type BatchWriter struct {
	rows  []byte
	data  []byte
	count uint32
}

// Len is the number of records pushed.
func (w *BatchWriter) Len() int { return int(w.count) }

// Push appends a record (its bytes are copied).
func (w *BatchWriter) Push(r Record) {
	if w.rows == nil {
		w.rows = make([]byte, 8, 8+rowSize*16)
	}
	var row [rowSize]byte
	le.PutUint64(row[0:], uint64(r.Timestamp))
	if r.Key == nil {
		le.PutUint32(row[12:], noKey)
	} else {
		le.PutUint32(row[8:], uint32(len(w.data)))
		le.PutUint32(row[12:], uint32(len(r.Key)))
		w.data = append(w.data, r.Key...)
	}
	le.PutUint32(row[16:], uint32(len(w.data)))
	le.PutUint32(row[20:], uint32(len(r.Value)))
	w.data = append(w.data, r.Value...)
	if len(r.Headers) > 0 {
		start := len(w.data)
		w.data = le.AppendUint16(w.data, uint16(len(r.Headers)))
		for _, h := range r.Headers {
			w.data = le.AppendUint16(w.data, uint16(len(h.Name)))
			w.data = append(w.data, h.Name...)
			w.data = le.AppendUint32(w.data, uint32(len(h.Value)))
			w.data = append(w.data, h.Value...)
		}
		le.PutUint32(row[24:], uint32(start))
		le.PutUint32(row[28:], uint32(len(w.data)-start))
	}
	w.rows = append(w.rows, row[:]...)
	w.count++
}

// Finish returns the encoded batch; the writer starts over empty.
func (w *BatchWriter) Finish() []byte {
	if w.rows == nil {
		w.rows = make([]byte, 8)
	}
	le.PutUint32(w.rows, w.count)
	out := append(w.rows, w.data...)
	*w = BatchWriter{}
	return out
}

// EncodeBatch encodes records as one batch.
func EncodeBatch(records []Record) []byte {
	var w BatchWriter
	for _, r := range records {
		w.Push(r)
	}
	return w.Finish()
}
