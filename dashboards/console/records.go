package console

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"repeaterd/store"
)

// The record page (GET /ui/records/{id}): a record, its payload
// pretty-printed and capped, and its attempts. Everything from the payload
// and the endpoint is rendered as escaped text.

const recordsPath = "/ui/records"

// formTime is the layout of the filters' datetime-local inputs, in UTC.
const formTime = "2006-01-02T15:04"

func recordPath(id int64) string { return recordsPath + "/" + strconv.FormatInt(id, 10) }

// recordFilter is the repeater page's record filter, parsed.
type recordFilter struct {
	view filterView
	page store.RecordPageParams
}

// parseRecordFilter reads state, key, after, before and cursor.
func parseRecordFilter(q url.Values) (recordFilter, error) {
	f := recordFilter{view: filterView{State: q.Get("state"), Key: q.Get("key"), After: q.Get("after"), Before: q.Get("before")}}
	if f.view.State != "" {
		s, err := store.ParseState(f.view.State)
		if err != nil {
			return f, err
		}
		f.page.States = []store.State{s}
	}
	if err := store.ValidateText("key", f.view.Key, 255); err != nil {
		return f, err
	}
	f.page.Key = f.view.Key
	for _, t := range []struct {
		raw string
		dst **time.Time
	}{{f.view.After, &f.page.CreatedAfter}, {f.view.Before, &f.page.CreatedBefore}} {
		if t.raw == "" {
			continue
		}
		v, err := time.Parse(formTime, t.raw)
		if err != nil {
			return f, errors.New("dates must be given as YYYY-MM-DDTHH:MM (UTC)")
		}
		*t.dst = &v
	}
	cursor, ok := queryInt(q.Get("cursor"))
	if !ok {
		return f, errors.New("cursor must be a record id")
	}
	f.page.BeforeID = cursor
	// The same rules as the bulk job's filter: no year 1 or 9999.
	check := f.bulk()
	check.RepeaterID = 1
	return f, check.Validate()
}

// query is the filter as a query string, without the cursor.
func (f recordFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.view.State, "key": f.view.Key, "after": f.view.After, "before": f.view.Before} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// bulk is the filter as a bulk job's, without its repeater.
func (f recordFilter) bulk() store.BulkFilter {
	return store.BulkFilter{States: f.page.States, Key: f.page.Key, CreatedAfter: f.page.CreatedAfter, CreatedBefore: f.page.CreatedBefore}
}

// serveRecord is GET /ui/records/{id}.
func (c *Console) serveRecord(w http.ResponseWriter, r *http.Request) {
	id, ok := queryInt(r.PathValue("id"))
	if !ok || id == 0 {
		c.writeError(w, http.StatusNotFound, "No such record.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), loadTimeout)
	defer cancel()
	rec, attempts, err := c.st.GetRecord(ctx, id)
	if store.ErrorCode(err) == store.ENOTFOUND {
		c.writeError(w, http.StatusNotFound, "No such record.")
		return
	}
	if err != nil {
		c.writeError(w, http.StatusInternalServerError, c.failed("record", err))
		return
	}
	v := recordView{Frame: c.frame(r, "Record #"+strconv.FormatInt(id, 10)),
		Row: recordRow(rec, c.cfg.Clock.Now()), RepeaterURL: repeaterPath(rec.RepeaterID), RepeaterID: rec.RepeaterID,
		Domain: rec.Domain}
	for _, a := range attempts {
		v.Attempts = append(v.Attempts, attemptView{State: a.State.String(), Status: a.StatusCode, Duration: time.Duration(a.DurationMS) * time.Millisecond,
			Message: a.Message, At: a.CreatedAt})
	}
	p, size, err := c.st.GetPayload(ctx, rec.PayloadID, store.MaxPayloadView)
	if err != nil {
		v.Err = c.failed("payload", err)
	} else {
		v.Payload = payloadOf(p, size)
	}
	c.render(w, http.StatusOK, "record", v)
}

// payloadOf shows a payload: JSON and XML indented, anything else as it is;
// a body over the cap is shown cut, unformatted.
func payloadOf(p *store.Payload, size int) payloadView {
	v := payloadView{ContentType: p.ContentType, Size: formatCount(int64(size)), Truncated: size > len(p.Body), Body: string(p.Body)}
	if v.Truncated {
		return v
	}
	mt, _, _ := mime.ParseMediaType(p.ContentType)
	switch {
	case mt == "application/json" || len(mt) > 5 && mt[len(mt)-5:] == "+json":
		var b bytes.Buffer
		if json.Indent(&b, p.Body, "", "  ") == nil {
			v.Body, v.Formatted = b.String(), "JSON"
		}
	case mt == "application/xml" || mt == "text/xml" || len(mt) > 4 && mt[len(mt)-4:] == "+xml":
		if s, ok := indentXML(p.Body); ok {
			v.Body, v.Formatted = s, "XML"
		}
	}
	return v
}

// indentXML re-encodes an XML document indented; false when it does not parse.
func indentXML(body []byte) (string, bool) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", false
		}
		if cd, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(cd)) == 0 {
			continue // whitespace between elements: the encoder indents
		}
		if err := enc.EncodeToken(xml.CopyToken(tok)); err != nil {
			return "", false
		}
	}
	if enc.Flush() != nil {
		return "", false
	}
	return b.String(), true
}
