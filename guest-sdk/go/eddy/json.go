package eddy

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AppendJSONString appends s as a JSON string, escaped as serde_json escapes it (quotes, backslashes and control
// characters only), so that a Go function's output can match a Rust one's byte for byte.
func AppendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			buf = append(buf, '\\', '"')
		case c == '\\':
			buf = append(buf, '\\', '\\')
		case c == '\n':
			buf = append(buf, '\\', 'n')
		case c == '\r':
			buf = append(buf, '\\', 'r')
		case c == '\t':
			buf = append(buf, '\\', 't')
		case c == '\b':
			buf = append(buf, '\\', 'b')
		case c == '\f':
			buf = append(buf, '\\', 'f')
		case c < 0x20:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			buf = append(buf, c)
		}
	}
	return append(buf, '"')
}

// AppendJSONFloat appends f as serde_json writes an f64: the shortest form that reads back the same, "1.0" for
// whole numbers, an exponent outside 1e-5..1e16, and null for NaN and infinities.
func AppendJSONFloat(buf []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(buf, "null"...)
	}
	if abs := math.Abs(f); abs == 0 || (abs >= 1e-5 && abs < 1e16) {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		buf = append(buf, s...)
		if !strings.ContainsRune(s, '.') {
			buf = append(buf, ".0"...)
		}
		return buf
	}
	// Go writes 1e+16 and 1e-07 where serde_json writes 1e16 and 1e-7.
	s := strconv.FormatFloat(f, 'e', -1, 64)
	mantissa, exp, _ := strings.Cut(s, "e")
	exp = strings.TrimPrefix(exp, "+")
	neg := strings.HasPrefix(exp, "-")
	exp = strings.TrimLeft(strings.TrimPrefix(exp, "-"), "0")
	buf = append(buf, mantissa...)
	buf = append(buf, 'e')
	if neg {
		buf = append(buf, '-')
	}
	return append(buf, exp...)
}

// ValidUTF8 says whether b is UTF-8 text.
func ValidUTF8(b []byte) bool { return utf8.Valid(b) }
