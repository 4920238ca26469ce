package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"unicode"
)

// Event filters: a repeater may receive only the events whose JSON payload
// matches its filter. The syntax is deliberately small:
//
//	filter    = condition { "and" condition }
//	condition = path "==" value
//	          | path "!=" value
//	          | path "in" "[" value { "," value } "]"
//	path      = name { "." name }            name = letter or _, then letters, digits, _ or -
//	value     = a JSON string, number, true, false or null
//
// A path walks nested objects from the payload's top level ("case.type"
// is payload["case"]["type"]). "==" holds when the field exists and equals
// the value (numbers compare by value: 1 == 1.0; no type coercion: "1" is
// not 1); "!=" holds when it does not ("!=" of a missing field holds); "in"
// holds when the field equals one of the values. All conditions must hold.
// A payload that is not a JSON object matches no filter. An empty filter
// matches every payload. Examples:
//
//	case.type == "patient"
//	status in ["open", "pending"] and owner.id != null
//
// Filters are parsed when a repeater is saved (a 422 names the fault) and
// at each fan-out.

// maxFilterLen and maxFilterConditions bound a filter.
const (
	maxFilterLen        = 2000
	maxFilterConditions = 20
)

// Filter is a parsed event filter.
type Filter struct {
	conds []condition
}

type condition struct {
	path   []string
	op     string // "==", "!=", "in"
	values []any  // decoded with UseNumber
}

// ParseFilter parses a filter; "" is the filter that matches everything.
// Errors are EINVALID and say where parsing stopped.
func ParseFilter(text string) (*Filter, error) {
	if len(text) > maxFilterLen {
		return nil, Errorf(EINVALID, "event_filter is over %d characters", maxFilterLen)
	}
	p := &filterParser{s: text}
	f := &Filter{}
	if p.skipSpace(); p.done() {
		return f, nil
	}
	for {
		c, err := p.condition()
		if err != nil {
			return nil, Errorf(EINVALID, "event_filter does not parse at character %d: %v", p.pos+1, err)
		}
		f.conds = append(f.conds, c)
		if len(f.conds) > maxFilterConditions {
			return nil, Errorf(EINVALID, "event_filter has more than %d conditions", maxFilterConditions)
		}
		if p.skipSpace(); p.done() {
			return f, nil
		}
		if !p.keyword("and") {
			return nil, Errorf(EINVALID, "event_filter does not parse at character %d: expected \"and\" or the end", p.pos+1)
		}
	}
}

type filterParser struct {
	s   string
	pos int
}

func (p *filterParser) done() bool { return p.pos >= len(p.s) }

func (p *filterParser) skipSpace() {
	for !p.done() && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n' || p.s[p.pos] == '\r') {
		p.pos++
	}
}

// keyword consumes word when it stands alone (followed by space or a bracket).
func (p *filterParser) keyword(word string) bool {
	if !strings.HasPrefix(p.s[p.pos:], word) {
		return false
	}
	end := p.pos + len(word)
	if end < len(p.s) && isNameChar(rune(p.s[end])) {
		return false
	}
	p.pos = end
	return true
}

func isNameChar(r rune) bool {
	return r == '_' || r == '-' || r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

func (p *filterParser) condition() (condition, error) {
	var c condition
	p.skipSpace()
	path, err := p.path()
	if err != nil {
		return c, err
	}
	c.path = path
	p.skipSpace()
	switch {
	case strings.HasPrefix(p.s[p.pos:], "=="):
		c.op, p.pos = "==", p.pos+2
	case strings.HasPrefix(p.s[p.pos:], "!="):
		c.op, p.pos = "!=", p.pos+2
	case p.keyword("in"):
		c.op = "in"
	default:
		return c, fmt.Errorf("expected ==, != or in after %s", strings.Join(path, "."))
	}
	p.skipSpace()
	if c.op != "in" {
		v, err := p.value()
		c.values = []any{v}
		return c, err
	}
	c.values, err = p.list()
	return c, err
}

func (p *filterParser) path() ([]string, error) {
	var path []string
	for {
		start := p.pos
		for !p.done() && isNameChar(rune(p.s[p.pos])) {
			p.pos++
		}
		name := p.s[start:p.pos]
		if name == "" || name[0] == '-' || unicode.IsDigit(rune(name[0])) {
			return nil, fmt.Errorf("expected a field name")
		}
		path = append(path, name)
		if p.done() || p.s[p.pos] != '.' {
			return path, nil
		}
		p.pos++
	}
}

// value decodes one JSON scalar at the cursor.
func (p *filterParser) value() (any, error) {
	dec := json.NewDecoder(strings.NewReader(p.s[p.pos:]))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("expected a JSON value (a string in double quotes, a number, true, false or null)")
	}
	if _, isDelim := tok.(json.Delim); isDelim {
		return nil, fmt.Errorf("expected a JSON scalar, not %v", tok)
	}
	p.pos += int(dec.InputOffset())
	if !p.done() && isNameChar(rune(p.s[p.pos])) {
		return nil, fmt.Errorf("unexpected text after a value")
	}
	return tok, nil
}

func (p *filterParser) list() ([]any, error) {
	if p.done() || p.s[p.pos] != '[' {
		return nil, fmt.Errorf("expected [ after in")
	}
	p.pos++
	var out []any
	for {
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		p.skipSpace()
		switch {
		case p.done():
			return nil, fmt.Errorf("expected , or ]")
		case p.s[p.pos] == ',':
			p.pos++
		case p.s[p.pos] == ']':
			p.pos++
			return out, nil
		default:
			return nil, fmt.Errorf("expected , or ]")
		}
	}
}

// Match reports whether the payload (JSON bytes) matches f. A nil or empty
// filter matches anything; a non-object payload matches only those.
func (f *Filter) Match(payload []byte) bool {
	if f == nil || len(f.conds) == 0 {
		return true
	}
	doc, ok := decodeObject(payload)
	return ok && f.matchDoc(doc)
}

func decodeObject(payload []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, false
	}
	return doc, true
}

func (f *Filter) matchDoc(doc map[string]any) bool {
	for _, c := range f.conds {
		v, found := lookup(doc, c.path)
		eq := false
		for _, want := range c.values {
			eq = eq || found && jsonEqual(v, want)
		}
		if eq == (c.op == "!=") {
			return false
		}
	}
	return true
}

func lookup(doc map[string]any, path []string) (any, bool) {
	var cur any = doc
	for _, name := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[name]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// jsonEqual compares a payload value with a filter scalar: numbers by
// value, the rest as decoded (objects and arrays equal no scalar).
func jsonEqual(a, b any) bool {
	an, aNum := a.(json.Number)
	bn, bNum := b.(json.Number)
	if aNum || bNum {
		if !aNum || !bNum {
			return false
		}
		x, okx := new(big.Float).SetString(an.String())
		y, oky := new(big.Float).SetString(bn.String())
		return okx && oky && x.Cmp(y) == 0
	}
	switch a.(type) {
	case map[string]any, []any:
		return false
	}
	return a == b
}
