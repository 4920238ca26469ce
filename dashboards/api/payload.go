package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"

	"repeaterd/store"
)

// Lengths of a record's own short fields (a repeater's are the store's).
const (
	maxContentTypeLen = 255
	maxKeyLen         = 255
)

// payloadInput is the payload part of a record or event body: exactly one
// of payload (any JSON value, sent as its bytes) and payload_base64 (any
// bytes).
type payloadInput struct {
	Payload       json.RawMessage `json:"payload"`
	PayloadBase64 *string         `json:"payload_base64"`
	ContentType   string          `json:"content_type"`
}

// body validates the payload and returns its bytes and content type.
func (p *payloadInput) body(limit int64) (body []byte, contentType string, err error) {
	hasJSON := len(p.Payload) > 0 && !bytes.Equal(p.Payload, []byte("null"))
	switch {
	case hasJSON && p.PayloadBase64 != nil:
		return nil, "", store.Errorf(store.EINVALID, "send payload or payload_base64, not both")
	case hasJSON:
		body, contentType = p.Payload, "application/json"
	case p.PayloadBase64 != nil:
		if body, err = base64.StdEncoding.DecodeString(*p.PayloadBase64); err != nil {
			return nil, "", store.Errorf(store.EINVALID, "payload_base64 is not valid base64 (standard alphabet, padded)")
		}
		contentType = "application/octet-stream"
	default:
		return nil, "", store.Errorf(store.EINVALID, "payload or payload_base64 is required")
	}
	if int64(len(body)) > limit {
		return nil, "", store.Errorf(codeTooLarge, "payload is %d bytes; the limit is %d", len(body), limit)
	}
	if p.ContentType != "" {
		if err := validateContentType(p.ContentType); err != nil {
			return nil, "", err
		}
		contentType = p.ContentType
	}
	return body, contentType, nil
}

// validateContentType accepts a media type net/http can send as a header.
func validateContentType(ct string) error {
	if err := store.ValidateText("content_type", ct, maxContentTypeLen); err != nil {
		return err
	}
	if _, _, err := mime.ParseMediaType(ct); err != nil {
		return store.Errorf(store.EINVALID, "content_type %q is not a media type: %v", ct, err)
	}
	return nil
}
