package store

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Secrets at rest: a repeater's signing secret and every configured header
// value are sealed with AES-256-GCM before they are written, and opened when
// a repeater is read, so the table holds only ciphertext and the plaintext
// exists only in memory on its way to the sender. A sealed value reads
//
//	enc:v1:<key id>:<base64url(nonce || ciphertext)>
//
// where the key id is the first 8 hex digits of the key's SHA-256; the
// associated data binds it to its field and its repeater's domain, so a
// value copied into another field or tenant's row does not open.
//
// The keys come from REPEATERD_SECRET_KEY: a comma-separated list whose
// first key seals every new write and whose others are only read, so a key
// is rotated by putting the new one first, running `repeaterd secrets
// reencrypt`, and then dropping the old. Without a key, values are stored
// as given (the web role and `run` say so loudly), and plaintext values
// written before a key was set stay readable until re-encrypted.

// SealedPrefix starts every sealed value. Plaintext may not start with it
// (Repeater.Validate), so a stored value is never ambiguous.
const SealedPrefix = "enc:v1:"

// SecretKeyBytes is the length of a key: AES-256.
const SecretKeyBytes = 32

// Keyring is the set of keys secrets are sealed and opened with. The first
// seals; every key opens. A nil *Keyring seals nothing (values are stored
// as given) and opens only plaintext.
type Keyring struct {
	keys []sealKey
}

type sealKey struct {
	id   string
	aead cipher.AEAD
}

// ParseKeyring parses REPEATERD_SECRET_KEY: comma-separated keys of 32
// bytes each, as 64 hex digits or base64 (standard or URL alphabet, padded
// or not); the first is the current one. "" is no keyring (nil, nil).
func ParseKeyring(spec string) (*Keyring, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return nil, nil
	}
	k := &Keyring{}
	seen := map[string]bool{}
	for i, part := range strings.Split(spec, ",") {
		raw, err := decodeKey(strings.TrimSpace(part))
		if err != nil {
			return nil, Errorf(EINVALID, "REPEATERD_SECRET_KEY: key %d: %v", i+1, err)
		}
		sum := sha256.Sum256(raw)
		id := hex.EncodeToString(sum[:4])
		if seen[id] {
			return nil, Errorf(EINVALID, "REPEATERD_SECRET_KEY: key %d repeats key %s", i+1, id)
		}
		seen[id] = true
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		k.keys = append(k.keys, sealKey{id: id, aead: aead})
	}
	return k, nil
}

// decodeKey reads one key: 64 hex digits, or base64 of 32 bytes.
func decodeKey(s string) ([]byte, error) {
	if len(s) == 2*SecretKeyBytes {
		if raw, err := hex.DecodeString(s); err == nil {
			return raw, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil {
			if len(raw) != SecretKeyBytes {
				return nil, fmt.Errorf("is %d bytes; a key is %d (e.g. `openssl rand -base64 32`)", len(raw), SecretKeyBytes)
			}
			return raw, nil
		}
	}
	return nil, fmt.Errorf("is neither 64 hex digits nor base64 of %d bytes (e.g. `openssl rand -base64 32`)", SecretKeyBytes)
}

// NewSecretKey returns a fresh key in the form ParseKeyring reads.
func NewSecretKey() string {
	return base64.StdEncoding.EncodeToString([]byte(randomBytes(SecretKeyBytes)))
}

// CurrentKeyID names the key new writes are sealed with, "" without keys.
func (k *Keyring) CurrentKeyID() string {
	if k == nil {
		return ""
	}
	return k.keys[0].id
}

// KeyIDs names every key, the current one first.
func (k *Keyring) KeyIDs() []string {
	if k == nil {
		return nil
	}
	ids := make([]string, len(k.keys))
	for i, key := range k.keys {
		ids[i] = key.id
	}
	return ids
}

// seal encrypts plaintext for the field aad names with the current key. ""
// stays "" (nothing to hide), and without keys plaintext is returned as is.
func (k *Keyring) seal(aad, plaintext string) string {
	if k == nil || plaintext == "" {
		return plaintext
	}
	key := k.keys[0]
	nonce := randomBytes(key.aead.NonceSize())
	sealed := key.aead.Seal([]byte(nonce), []byte(nonce), []byte(plaintext), []byte(aad))
	return SealedPrefix + key.id + ":" + base64.RawURLEncoding.EncodeToString(sealed)
}

// open returns the plaintext of a stored value: plaintext as it is, a
// sealed value decrypted with the key its id names. keyID is that id ("" for
// plaintext), for re-encryption.
func (k *Keyring) open(aad, stored string) (plaintext, keyID string, err error) {
	rest, sealed := strings.CutPrefix(stored, SealedPrefix)
	if !sealed {
		return stored, "", nil
	}
	keyID, b64, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", Errorf(EINTERNAL, "a sealed %s is malformed", aad)
	}
	if k == nil {
		return "", keyID, Errorf(EINTERNAL, "%s is sealed with key %s, but no REPEATERD_SECRET_KEY is set", aad, keyID)
	}
	for _, key := range k.keys {
		if key.id != keyID {
			continue
		}
		raw, err := base64.RawURLEncoding.DecodeString(b64)
		if err != nil || len(raw) < key.aead.NonceSize() {
			return "", keyID, Errorf(EINTERNAL, "a sealed %s is malformed", aad)
		}
		nonce, ct := raw[:key.aead.NonceSize()], raw[key.aead.NonceSize():]
		pt, err := key.aead.Open(nil, nonce, ct, []byte(aad))
		if err != nil {
			return "", keyID, Errorf(EINTERNAL, "%s does not open with key %s (tampered, or sealed for another row)", aad, keyID)
		}
		return string(pt), keyID, nil
	}
	return "", keyID, Errorf(EINTERNAL, "%s is sealed with key %s, which REPEATERD_SECRET_KEY does not hold (keys: %s)",
		aad, keyID, strings.Join(k.KeyIDs(), ", "))
}

func randomBytes(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return string(b)
}

// secretAAD is the associated data of one secret field of a repeater of
// domain: its field ("signing_secret", or "header:" and the lower-cased
// header name) and the domain.
func secretAAD(domain, field string) string { return "repeaterd/" + field + "/" + domain }

func headerField(name string) string { return "header:" + strings.ToLower(name) }

// SecretsEncrypted reports whether secrets are sealed on write.
func (s *Store) SecretsEncrypted() bool { return s.opts.Secrets != nil }

// SecretKeyID names the key new secrets are sealed with, "" without one.
func (s *Store) SecretKeyID() string { return s.opts.Secrets.CurrentKeyID() }

// sealed returns the row to write for r: r with its secrets sealed.
func (s *Store) sealed(r *Repeater) *Repeater {
	row := *r
	row.SigningSecret = s.opts.Secrets.seal(secretAAD(r.Domain, "signing_secret"), r.SigningSecret)
	row.PreviousSigningSecret = s.opts.Secrets.seal(secretAAD(r.Domain, "previous_signing_secret"), r.PreviousSigningSecret)
	row.Headers = make(map[string]string, len(r.Headers))
	for k, v := range r.Headers {
		row.Headers[k] = s.opts.Secrets.seal(secretAAD(r.Domain, headerField(k)), v)
	}
	return &row
}

// openSecrets replaces r's stored secrets with their plaintext. It reports
// whether any value was not sealed with the current key (plaintext, or an
// older key), which re-encryption rewrites.
func (s *Store) openSecrets(r *Repeater) (stale bool, err error) {
	current := s.opts.Secrets.CurrentKeyID()
	check := func(stored, field string) string {
		if err != nil || stored == "" {
			return stored
		}
		pt, keyID, oerr := s.opts.Secrets.open(secretAAD(r.Domain, field), stored)
		if oerr != nil {
			err = fmt.Errorf("repeater %d: %w", r.ID, oerr)
		}
		stale = stale || keyID != current
		return pt
	}
	r.SigningSecret = check(r.SigningSecret, "signing_secret")
	r.PreviousSigningSecret = check(r.PreviousSigningSecret, "previous_signing_secret")
	for k, v := range r.Headers {
		r.Headers[k] = check(v, headerField(k))
	}
	return stale, err
}

// ReencryptResult counts what ReencryptSecrets did.
type ReencryptResult struct {
	Repeaters int // repeaters read
	Rewritten int // repeaters whose secrets were sealed anew with the current key
	// Connections and ConnectionsRewritten count the same for connections.
	Connections, ConnectionsRewritten int
}

// reencryptBatch is how many repeaters one transaction of ReencryptSecrets
// locks and rewrites.
const reencryptBatch = 200

// ReencryptSecrets seals every repeater's secrets (deleted ones included)
// with the current key: plaintext written before a key was set and values
// sealed with an older key alike, so the older key can then be dropped. It
// needs a keyring, and every stored value must open with one of its keys; a
// value that does not stops it with the repeater's id, having rewritten the
// batches before. Running it again rewrites nothing.
func (s *Store) ReencryptSecrets(ctx context.Context) (ReencryptResult, error) {
	var res ReencryptResult
	if s.opts.Secrets == nil {
		return res, Errorf(EINVALID, "REPEATERD_SECRET_KEY is not set: there is no key to encrypt with")
	}
	for after := int64(0); ; {
		n, last, rewritten, err := s.reencryptAfter(ctx, after)
		res.Repeaters += n
		res.Rewritten += rewritten
		if err != nil {
			return res, err
		}
		if n < reencryptBatch {
			res.Connections, res.ConnectionsRewritten, err = s.reencryptConnections(ctx)
			return res, err
		}
		after = last
	}
}

// reencryptAfter rewrites one batch of repeaters with ids above after.
func (s *Store) reencryptAfter(ctx context.Context, after int64) (n int, last int64, rewritten int, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, domain, signing_secret, previous_signing_secret, headers FROM repeaters
			WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE`, after, reencryptBatch)
		if err != nil {
			return err
		}
		reps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Repeater, error) {
			var r Repeater
			return r, row.Scan(&r.ID, &r.Domain, &r.SigningSecret, &r.PreviousSigningSecret, &r.Headers)
		})
		if err != nil {
			return err
		}
		n, rewritten = len(reps), 0
		for i := range reps {
			r := &reps[i]
			last = r.ID
			stale, err := s.openSecrets(r)
			if err != nil {
				return err
			}
			if !stale {
				continue
			}
			row := s.sealed(r)
			if _, err := tx.Exec(ctx, `UPDATE repeaters SET signing_secret = $2, headers = $3, previous_signing_secret = $4 WHERE id = $1`,
				r.ID, row.SigningSecret, row.Headers, row.PreviousSigningSecret); err != nil {
				return err
			}
			rewritten++
		}
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	return n, last, rewritten, nil
}

// errSealedPlaintext is what Validate says of a value that looks sealed.
var errSealedPlaintext = errors.New("must not start with " + SealedPrefix + " (the prefix of encrypted values)")
