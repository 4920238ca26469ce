package store

import (
	"database/sql/driver"
	"fmt"
	"slices"
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
	elems, null, err := arrayElements(src, "Int32Array")
	if err != nil || null {
		*a = nil
		return err
	}
	out := Int32Array{}
	for _, f := range elems {
		n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return fmt.Errorf("store: bad integer array element %q", f)
		}
		out = append(out, int32(n))
	}
	*a = out
	return nil
}

// Contains reports whether v is in the array.
func (a Int32Array) Contains(v int) bool { return slices.Contains(a, int32(v)) }

// TextArray is a Postgres text[] column of event types for GORM.
type TextArray []string

// Value renders the array literal; elements are event types, which carry
// no quote or backslash (ValidateEventType).
func (a TextArray) Value() (driver.Value, error) {
	parts := make([]string, len(a))
	for i, v := range a {
		if strings.ContainsAny(v, `"\`) {
			return nil, fmt.Errorf("store: text array element %q has a quote or backslash", v)
		}
		parts[i] = `"` + v + `"`
	}
	return "{" + strings.Join(parts, ",") + "}", nil
}

// Scan parses the array literal.
func (a *TextArray) Scan(src any) error {
	elems, null, err := arrayElements(src, "TextArray")
	if err != nil || null {
		*a = nil
		return err
	}
	out := TextArray{}
	for _, f := range elems {
		out = append(out, strings.Trim(f, `"`))
	}
	*a = out
	return nil
}

// Contains reports whether v is in the array.
func (a TextArray) Contains(v string) bool { return slices.Contains(a, v) }

// arrayElements splits an array literal of src (as the driver hands it)
// into its elements; null reports SQL NULL. Elements hold no commas
// (integers, event types).
func arrayElements(src any, typ string) (elems []string, null bool, err error) {
	var text string
	switch v := src.(type) {
	case nil:
		return nil, true, nil
	case string:
		text = v
	case []byte:
		text = string(v)
	default:
		return nil, false, fmt.Errorf("store: cannot scan %T into %s", src, typ)
	}
	text = strings.TrimSuffix(strings.TrimPrefix(text, "{"), "}")
	if text == "" {
		return nil, false, nil
	}
	return strings.Split(text, ","), false, nil
}
