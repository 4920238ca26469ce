package repeaters

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"repeaterd/store"
)

// The TEST-NET and public addresses below are only parsed, never dialled.
var validateURLTests = []struct {
	raw    string
	strict bool // accepted with allowPrivate=false
	lax    bool // accepted with allowPrivate=true
}{
	{"http://example.com/hook", true, true},
	{"https://example.com:8443/x?y=1", true, true},
	{"HTTPS://Example.COM/", true, true},
	{"http://8.8.8.8/", true, true},
	{"http://134744072/", true, true}, // 8.8.8.8 in decimal
	{"http://[2606:4700:4700::1111]/", true, true},
	{"http://[2002:808:808::1]/", true, true}, // 6to4 of 8.8.8.8
	{"http://1.2.3.4.5/", true, true},         // a name, not an address: the dial guard judges it

	{"", false, false},
	{"example.com/hook", false, false},
	{"ftp://example.com/", false, false},
	{"javascript:alert(1)", false, false},
	{"http:example.com", false, false},
	{"http://", false, false},
	{"http:///path", false, false},
	{"http://:80/", false, false},
	{"http://user:pass@example.com/", false, false},
	{"http://user@example.com/", false, false},
	{"http://example.com:0/", false, false},
	{"http://example.com:99999/", false, false},
	{"http://[::1/", false, false},
	{"http://exa mple.com/", false, false},

	{"http://127.0.0.1/", false, true},
	{"http://127.0.0.1./", false, true},
	{"http://127.1/", false, true},
	{"http://2130706433/", false, true},   // decimal
	{"http://0177.0.0.1/", false, true},   // octal
	{"http://017700000001/", false, true}, // octal, one part
	{"http://0x7f.0.0.1/", false, true},   // hex
	{"http://0x7f000001/", false, true},
	{"http://localhost:8080/", false, true},
	{"http://LocalHost./", false, true},
	{"http://api.localhost/", false, true},
	{"http://10.1.2.3/", false, true},
	{"http://172.16.0.1/", false, true},
	{"http://192.168.1.1/", false, true},
	{"http://3232235777/", false, true}, // 192.168.1.1 in decimal
	{"http://169.254.169.254/latest/meta-data/", false, true},
	{"http://100.64.0.1/", false, true},
	{"http://0.0.0.0/", false, true},
	{"http://0/", false, true},
	{"http://0.1.2.3/", false, true},
	{"http://224.0.0.1/", false, true},
	{"http://255.255.255.255/", false, true},
	{"http://[::1]:8080/", false, true},
	{"http://[::]/", false, true},
	{"http://[::ffff:127.0.0.1]/", false, true},
	{"http://[::ffff:7f00:1]/", false, true},
	{"http://[::ffff:169.254.169.254]/", false, true},
	{"http://[fe80::1%25eth0]/", false, true},
	{"http://[fc00::1]/", false, true},
	{"http://[fd00:ec2::254]/", false, true}, // AWS IMDS over IPv6
	{"http://[ff02::1]/", false, true},
	{"http://[64:ff9b::a9fe:a9fe]/", false, true}, // NAT64 of 169.254.169.254
	{"http://[2002:7f00:1::]/", false, true},      // 6to4 of 127.0.0.1
}

func TestValidateURL(t *testing.T) {
	for _, tt := range validateURLTests {
		for _, allow := range []bool{false, true} {
			want := tt.strict
			if allow {
				want = tt.lax
			}
			err := ValidateURL(tt.raw, allow)
			if (err == nil) != want {
				t.Errorf("ValidateURL(%q, allowPrivate=%v) = %v, want ok=%v", tt.raw, allow, err, want)
				continue
			}
			if err != nil && store.ErrorCode(err) != store.EINVALID {
				t.Errorf("ValidateURL(%q) error %v has code %q, want %q", tt.raw, err, store.ErrorCode(err), store.EINVALID)
			}
			if err != nil && tt.lax && !strings.Contains(err.Error(), "REPEATERD_ALLOW_PRIVATE_TARGETS") {
				t.Errorf("ValidateURL(%q) refusal %q does not name REPEATERD_ALLOW_PRIVATE_TARGETS", tt.raw, err)
			}
		}
	}
}

func TestValidateURLDoesNotEchoQuery(t *testing.T) {
	for _, raw := range []string{"http://127.0.0.1/?token=s3cret", "ftp://example.com/?token=s3cret", "http://u:s3cret@example.com/"} {
		if err := ValidateURL(raw, false); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ValidateURL(%q) = %v; want an error without the secret", raw, err)
		}
	}
}

func FuzzValidateURL(f *testing.F) {
	for _, tt := range validateURLTests {
		f.Add(tt.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		strict, lax := ValidateURL(raw, false), ValidateURL(raw, true)
		for _, err := range []error{strict, lax} {
			if err != nil && store.ErrorCode(err) != store.EINVALID {
				t.Fatalf("ValidateURL(%q) = %v, code %q", raw, err, store.ErrorCode(err))
			}
		}
		if strict == nil && lax != nil {
			t.Fatalf("ValidateURL(%q): accepted strictly, refused with private targets allowed: %v", raw, lax)
		}
	})
}

func TestValidateURLInetATON(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = not an address
	}{
		{"127.1", "127.0.0.1"},
		{"0x7f.1", "127.0.0.1"},
		{"1.2.3", "1.2.0.3"},
		{"2130706433", "127.0.0.1"},
		{"4294967295", "255.255.255.255"},
		{"0x", "0.0.0.0"},
		{"0", "0.0.0.0"},
		{"4294967296", ""},
		{"256.1.1.1", ""},
		{"1.2.3.256", ""},
		{"1.2.65536", ""},
		{"1.2.3.4.5", ""},
		{"08.0.0.1", ""}, // 8 is not an octal digit
		{"1..2", ""},
		{"", ""},
		{"example", ""},
		{"+1.2.3.4", ""},
	}
	for _, tt := range tests {
		a, ok := parseInetATON(tt.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tt.want {
			t.Errorf("parseInetATON(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSSRFGuardDial(t *testing.T) {
	tests := []struct {
		addr    string
		refused bool
	}{
		{"93.184.216.34:443", false},
		{"[2606:4700:4700::1111]:443", false},
		{"127.0.0.1:80", true},
		{"10.0.0.1:80", true},
		{"100.100.100.200:80", true}, // Alibaba metadata, CGNAT range
		{"169.254.169.254:80", true},
		{"[::1]:80", true},
		{"[::ffff:10.0.0.1]:80", true},
		{"[fe80::1%eth0]:80", true},
		{"[64:ff9b::7f00:1]:80", true},
		{"not an address", true}, // fail closed
	}
	for _, tt := range tests {
		err := guardDial("tcp", tt.addr, nil)
		if tt.refused != (err != nil) {
			t.Errorf("guardDial(%q) = %v, want refused=%v", tt.addr, err, tt.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "REPEATERD_ALLOW_PRIVATE_TARGETS") {
			t.Errorf("guardDial(%q) = %q; want it to name REPEATERD_ALLOW_PRIVATE_TARGETS", tt.addr, err)
		}
	}
}

// TestSSRFMetadataRefusedBeforeConnect sends to the cloud metadata address
// with the guard on. The guard runs before connect(2), so the outcome is the
// refusal itself; a timeout or connection error would mean a packet left.
func TestSSRFMetadataRefusedBeforeConnect(t *testing.T) {
	s := newHTTPSender(t, SenderConfig{})
	r := httpRepeater("http://169.254.169.254/latest/meta-data/")
	r.TimeoutMS = 2000
	out := s.Send(context.Background(), r, httpRecord(1, "{}"))
	want := "destination 169.254.169.254:80 refused: link-local address"
	if out.State != store.StateFail || out.StatusCode != 0 || !strings.Contains(out.Message, want) ||
		!strings.Contains(out.Message, "REPEATERD_ALLOW_PRIVATE_TARGETS=true") {
		t.Fatalf("outcome = %+v; want Fail with %q naming REPEATERD_ALLOW_PRIVATE_TARGETS", out, want)
	}

	// The same holds for a bare dial through the Sender's transport.
	_, err := s.transport.DialContext(context.Background(), "tcp", "169.254.169.254:80")
	if _, ok := errors.AsType[*privateTargetError](err); !ok {
		t.Fatalf("dial 169.254.169.254:80 = %v; want a refusal", err)
	}
}

// TestSSRFRefusedAtDial sends to loopback in every spelling with the guard
// on: nothing may reach the sink. The same URLs with the guard off reach it,
// so the refusal is the guard's doing and not a bad URL. Send does no static
// address check, so "localhost" is refused on the address it resolved to.
func TestSSRFRefusedAtDial(t *testing.T) {
	var hits atomic.Int32
	sink := func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }
	v4 := httptest.NewServer(http.HandlerFunc(sink))
	t.Cleanup(v4.Close)
	portStr := strconv.Itoa(v4.Listener.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		url       string
		reachable bool // the sink listens there (checked with the guard off)
	}{
		{"http://127.0.0.1:" + portStr + "/", true},
		{"http://localhost:" + portStr + "/", true},
		{"http://[::ffff:127.0.0.1]:" + portStr + "/", true},
		{"http://0.0.0.0:" + portStr + "/", false},
		{"http://[::1]:" + portStr + "/", false},
	}
	if ln, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		v6 := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(sink)}}
		v6.Start()
		t.Cleanup(v6.Close)
		tests = append(tests, struct {
			url       string
			reachable bool
		}{v6.URL + "/", true})
	}

	guarded := newHTTPSender(t, SenderConfig{})
	open := newHTTPSender(t, SenderConfig{AllowPrivateTargets: true})
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			before := hits.Load()
			out := guarded.Send(context.Background(), httpRepeater(tt.url), httpRecord(1, "{}"))
			if hits.Load() != before {
				t.Fatalf("guarded send reached the sink: %+v", out)
			}
			if out.State != store.StateFail || out.StatusCode != 0 ||
				!strings.Contains(out.Message, "refused") || !strings.Contains(out.Message, "REPEATERD_ALLOW_PRIVATE_TARGETS=true") {
				t.Fatalf("guarded outcome = %+v; want a clear refusal", out)
			}
			if strings.Contains(tt.url, "localhost") && !strings.Contains(out.Message, "destination 127.0.0.1:") &&
				!strings.Contains(out.Message, "destination [::1]:") {
				t.Errorf("refusal %q does not name the resolved address", out.Message)
			}
			if tt.reachable {
				if out := open.Send(context.Background(), httpRepeater(tt.url), httpRecord(1, "{}")); out.State != store.StateSuccess {
					t.Fatalf("with private targets allowed: %+v; want Success", out)
				}
			}
		})
	}
}
