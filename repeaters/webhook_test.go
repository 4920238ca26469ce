package repeaters

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"testing"
	"time"
)

// The Standard Webhooks reference vector, as its libraries test it.
const (
	specSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	specMsgID  = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	specBody   = `{"test": 2432232314}`
	specSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var specTime = time.Unix(1614265330, 0)

func TestSignStandardWebhooksVector(t *testing.T) {
	if got := Sign(specSecret, specMsgID, specTime, []byte(specBody)); got != specSig {
		t.Fatalf("Sign = %q, want %q", got, specSig)
	}
}

func TestSignRawSecret(t *testing.T) {
	// A secret without the whsec_ prefix (or with an undecodable key) is
	// used as it is.
	for _, secret := range []string{"plain-secret", "whsec_not base64!"} {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte("msg_1.1614265330.body"))
		want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
		if got := Sign(secret, "msg_1", specTime, []byte("body")); got != want {
			t.Errorf("Sign(%q) = %q, want %q", secret, got, want)
		}
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(specBody)
	tests := []struct {
		name   string
		secret string
		msgID  string
		ts     time.Time
		body   []byte
		header string
		want   bool
	}{
		{"valid", specSecret, specMsgID, specTime, body, specSig, true},
		{"one of several (rotation)", specSecret, specMsgID, specTime, body, "v1,Zm9v " + specSig, true},
		{"wrong secret", "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key")), specMsgID, specTime, body, specSig, false},
		{"wrong body", specSecret, specMsgID, specTime, []byte(`{"test": 1}`), specSig, false},
		{"wrong id", specSecret, "msg_other", specTime, body, specSig, false},
		{"wrong timestamp", specSecret, specMsgID, specTime.Add(time.Second), body, specSig, false},
		{"other version", specSecret, specMsgID, specTime, body, "v2" + specSig[2:], false},
		{"not base64", specSecret, specMsgID, specTime, body, "v1,!!!", false},
		{"empty", specSecret, specMsgID, specTime, body, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Verify(tt.secret, tt.msgID, tt.ts, tt.body, tt.header); got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWebhookIDStable(t *testing.T) {
	if a, b := WebhookID(42), WebhookID(42); a != b || a != "msg_42" {
		t.Errorf("WebhookID(42) = %q then %q, want msg_42 both times", a, b)
	}
	if WebhookID(42) == WebhookID(43) {
		t.Error("different records share a webhook-id")
	}
}
