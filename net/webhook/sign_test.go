package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/miyamotohq/miyamoto/node"
)

// verifyV1 checks one "v1,<sig>" entry the way a worker would, written here from
// the Standard Webhooks text rather than with the package's own code.
func verifyV1(key []byte, id, ts string, body []byte, entry string) bool {
	sig, ok := strings.CutPrefix(entry, "v1,")
	if !ok {
		return false
	}
	got, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

func secretOf(key []byte) string { return "whsec_" + base64.StdEncoding.EncodeToString(key) }

// The known answer published with the Standard Webhooks reference libraries.
func TestSignMatchesTheSpecsKnownAnswer(t *testing.T) {
	s, err := ParseSecrets([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	require.NoError(t, err)
	got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

type signedRequest struct {
	header http.Header
	body   []byte
}

func signedWorker(t *testing.T) (*httptest.Server, chan signedRequest) {
	got := make(chan signedRequest, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- signedRequest{r.Header.Clone(), b}
		w.WriteHeader(503) // so that the test can send a second attempt, as the node would
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// Two secrets (a rotation) give two signatures, each verifying with its own key;
// the id is the task ID on both attempts; a tampered body verifies with neither.
func TestDeliveryIsSigned(t *testing.T) {
	oldKey := []byte("old-key-0123456789abcdefghij") // 28 bytes
	newKey := []byte("new-key-0123456789abcdefghijklmnopqrstuv")
	signer, err := ParseSecrets([]string{secretOf(newKey), secretOf(oldKey)})
	require.NoError(t, err)

	srv, got := signedWorker(t)
	res := newResults()
	d := New(Config{Signer: signer}, res.post)
	closeDispatcher(t, d)
	tk := task("8f7d1c2e-3b4a-4f5e-9d8c-7b6a5f4e3d2c", srv.URL+"/hook")
	tk.Body = []byte(`{"order":42,"note":"naïve café"}`)
	tk.ContentType = "application/json"
	tk.Headers = []node.Header{{Name: "Webhook-Signature", Value: "v1,forged"}, {Name: "webhook-id", Value: "forged"}, {Name: "Webhook-Timestamp", Value: "1"}}

	var stamps []int64
	for attempt := uint64(1); attempt <= 2; attempt++ {
		before := time.Now().Unix()
		d.Dispatch(node.Delivery{Task: tk, Attempt: attempt, Deadline: 5 * time.Second})
		r := res.next(t, 10*time.Second)
		require.Equal(t, 503, r.Status)
		after := time.Now().Unix()
		req := <-got

		require.Equal(t, tk.Body, req.body, "the worker gets the task's body, as signed")
		h := req.header
		require.Equal(t, []string{tk.ID}, h.Values("webhook-id"), "the id is the task ID, and the task's own header is replaced")
		require.Len(t, h.Values("webhook-timestamp"), 1)
		ts := h.Get("webhook-timestamp")
		sec, err := strconv.ParseInt(ts, 10, 64)
		require.NoError(t, err, "webhook-timestamp must be integer seconds, not %q", ts)
		require.GreaterOrEqual(t, sec, before)
		require.LessOrEqual(t, sec, after)
		stamps = append(stamps, sec)

		require.Len(t, h.Values("webhook-signature"), 1)
		sigs := strings.Split(h.Get("webhook-signature"), " ")
		require.Len(t, sigs, 2, "one signature per secret")
		require.True(t, verifyV1(newKey, tk.ID, ts, req.body, sigs[0]), "first signature, new key")
		require.True(t, verifyV1(oldKey, tk.ID, ts, req.body, sigs[1]), "second signature, old key")
		require.False(t, verifyV1(oldKey, tk.ID, ts, req.body, sigs[0]), "each signature is its own key's")
		require.False(t, verifyV1(newKey, tk.ID, ts, req.body, sigs[1]))

		tampered := []byte(strings.Replace(string(req.body), "42", "43", 1))
		for i, key := range [][]byte{newKey, oldKey} {
			require.False(t, verifyV1(key, tk.ID, ts, tampered, sigs[i]), "a tampered body must fail")
			require.False(t, verifyV1(key, "other-task", ts, req.body, sigs[i]), "another id must fail")
			require.False(t, verifyV1(key, tk.ID, strconv.FormatInt(sec+1, 10), req.body, sigs[i]), "another timestamp must fail")
		}
	}
	require.Len(t, stamps, 2)
}

// A worker can deduplicate on webhook-id across replicas: it depends on the task
// alone, not on the dispatcher that sends it.
func TestWebhookIDIsTheSameFromEveryReplica(t *testing.T) {
	key := []byte("shared-secret-between-replicas!!")
	srv, got := signedWorker(t)
	var ids []string
	for _, nodeID := range []string{"n1", "n2"} {
		signer, err := ParseSecrets([]string{secretOf(key)})
		require.NoError(t, err)
		res := newResults()
		d := New(Config{NodeID: nodeID, Signer: signer}, res.post)
		closeDispatcher(t, d)
		d.Dispatch(node.Delivery{Task: task("task-7", srv.URL), Attempt: 1, Deadline: 5 * time.Second})
		res.next(t, 10*time.Second)
		req := <-got
		require.True(t, verifyV1(key, "task-7", req.header.Get("webhook-timestamp"), req.body, req.header.Get("webhook-signature")))
		ids = append(ids, req.header.Get("webhook-id"))
	}
	require.Equal(t, []string{"task-7", "task-7"}, ids)
}

func TestUnsignedDeliveryHasNoSignatureHeaders(t *testing.T) {
	srv, got := signedWorker(t)
	res := newResults()
	d := New(Config{}, res.post)
	closeDispatcher(t, d)
	d.Dispatch(node.Delivery{Task: task("t", srv.URL), Attempt: 1, Deadline: 5 * time.Second})
	res.next(t, 10*time.Second)
	h := (<-got).header
	for _, name := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
		_, present := h[http.CanonicalHeaderKey(name)]
		require.False(t, present, "%s must be absent without a signer", name)
	}
}

func TestParseSecrets(t *testing.T) {
	s, err := ParseSecrets(nil)
	require.NoError(t, err)
	require.Nil(t, s, "no secrets: unsigned")

	for _, n := range []int{24, 32, 64} {
		s, err := ParseSecrets([]string{secretOf(make([]byte, n))})
		require.NoError(t, err, "%d bytes", n)
		require.Len(t, strings.Split(s.Sign("id", time.Unix(1, 0), nil), " "), 1)
	}

	good := secretOf([]byte("0123456789abcdef01234567"))
	cases := []struct {
		name, secret, want string
	}{
		{"missing prefix", base64.StdEncoding.EncodeToString([]byte("0123456789abcdef01234567")), `must start with "whsec_"`},
		{"wrong case prefix", "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `must start with "whsec_"`},
		{"prefix without underscore", "whsecMfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", `must start with "whsec_"`},
		{"bad base64", "whsec_MfKQ9r8GKYqr!wjUPD8ILPZIo2LaLaSw", "is not valid standard base64"},
		{"url-safe base64", "whsec_" + base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe}), "is not valid standard base64"},
		{"empty key", "whsec_", "decodes to 0 bytes; a key must be 24 to 64 random bytes"},
		{"too short", secretOf([]byte("sixteen-bytes!!!")), "decodes to 16 bytes; a key must be 24 to 64 random bytes"},
		{"one byte short", secretOf(make([]byte, 23)), "decodes to 23 bytes"},
		{"too long", secretOf(make([]byte, 65)), "decodes to 65 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSecrets([]string{good, c.secret})
			require.Nil(t, s)
			require.ErrorContains(t, err, "signing secret 2 of 2: "+c.want)
			if b64, _ := strings.CutPrefix(c.secret, "whsec_"); len(b64) > 8 {
				require.NotContains(t, err.Error(), b64, "the error must not show the secret")
			}
		})
	}

	// Every bad secret is reported at once.
	_, err = ParseSecrets([]string{"nope", good, "whsec_!!"})
	require.ErrorContains(t, err, "signing secret 1 of 3: must start with")
	require.ErrorContains(t, err, "signing secret 3 of 3: is not valid standard base64")
}

func TestSignerPrintsNoKeys(t *testing.T) {
	key := []byte("a-key-that-must-never-be-printed")
	s, err := ParseSecrets([]string{secretOf(key)})
	require.NoError(t, err)
	cfg := Config{Signer: s}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(format, cfg)
		require.NotContains(t, out, string(key), format)
		require.NotContains(t, out, fmt.Sprint(key[:8]), format)
	}
	require.Equal(t, "Standard Webhooks signer with 1 secret(s)", s.String())
}
