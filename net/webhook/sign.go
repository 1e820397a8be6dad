package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret: "whsec_" and then the key bytes in
// standard base64, as the Standard Webhooks specification writes them.
const SecretPrefix = "whsec_"

// Key sizes the Standard Webhooks specification allows: 24 to 64 random bytes.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// Signer signs deliveries the Standard Webhooks way (https://www.standardwebhooks.com),
// which libraries in most languages verify. Each delivery then carries:
//
//	webhook-id:        the task ID: the same on every attempt and from every
//	                   replica, so that a worker can drop deliveries it has done;
//	webhook-timestamp: the send time in integer Unix seconds; a worker should refuse
//	                   one far from its clock (say by 5 minutes), against replays;
//	webhook-signature: "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" for each
//	                   secret, space-separated.
//
// Several secrets sign side by side during a rotation: the worker accepts any
// signature that verifies with a key it knows. A Signer is safe for concurrent use.
type Signer struct {
	keys [][]byte
}

// ParseSecrets reads signing secrets ("whsec_" + base64 of 24 to 64 key bytes). No
// secrets at all give a nil Signer: deliveries go unsigned. An error names the
// secret at fault by its place in the list, never its content.
func ParseSecrets(secrets []string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, nil
	}
	s := &Signer{}
	var errs []error
	for i, sec := range secrets {
		key, err := parseSecret(sec)
		if err != nil {
			errs = append(errs, fmt.Errorf("signing secret %d of %d: %w", i+1, len(secrets), err))
			continue
		}
		s.keys = append(s.keys, key)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func parseSecret(sec string) ([]byte, error) {
	b64, ok := strings.CutPrefix(sec, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("must start with %q (then the key in base64)", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("is not valid standard base64 after %q: %v", SecretPrefix, err)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("decodes to %d bytes; a key must be %d to %d random bytes", len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}

// Sign returns the webhook-signature header value for a message: one "v1,<sig>" per
// secret, in the order given to ParseSecrets, space-separated. id must not contain
// '.' (task IDs are UUIDs); ts is cut to whole seconds, as in webhook-timestamp.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	prefix := id + "." + strconv.FormatInt(ts.Unix(), 10) + "."
	sigs := make([]string, len(s.keys))
	for i, key := range s.keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(prefix))
		mac.Write(body)
		sigs[i] = "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	}
	return strings.Join(sigs, " ")
}

// setHeaders puts the three signature headers on h, replacing any the task set.
func (s *Signer) setHeaders(h http.Header, id string, ts time.Time, body []byte) {
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", s.Sign(id, ts, body))
}

// String names the Signer without its keys, so that printing a Config shows none.
func (s *Signer) String() string {
	if s == nil {
		return "unsigned"
	}
	return fmt.Sprintf("Standard Webhooks signer with %d secret(s)", len(s.keys))
}

// GoString hides the keys from %#v too.
func (s *Signer) GoString() string { return s.String() }
