package store

import (
	"database/sql/driver"
	"fmt"
	"strconv"
	"strings"
)

// Int32Array is a Postgres integer[] column for GORM.
type Int32Array []int32

// Value renders the array literal.
func (a Int32Array) Value() (driver.Value, error) {
	parts := make([]string, len(a))
	for i, v := range a {
		parts[i] = strconv.FormatInt(int64(v), 10)
	}
	return "{" + strings.Join(parts, ",") + "}", nil
}

// Scan parses the array literal.
func (a *Int32Array) Scan(src any) error {
	var text string
	switch v := src.(type) {
	case nil:
		*a = nil
		return nil
	case string:
		text = v
	case []byte:
		text = string(v)
	default:
		return fmt.Errorf("store: cannot scan %T into Int32Array", src)
	}
	text = strings.Trim(text, "{}")
	out := Int32Array{}
	if text != "" {
		for _, f := range strings.Split(text, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
			if err != nil {
				return fmt.Errorf("store: bad integer array element %q", f)
			}
			out = append(out, int32(n))
		}
	}
	*a = out
	return nil
}

// Contains reports whether v is in the array.
func (a Int32Array) Contains(v int) bool {
	for _, x := range a {
		if int(x) == v {
			return true
		}
	}
	return false
}
