package walstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// The stable file holds every key of the StableStore:
//
//	"WSTB" | version (1 byte) | uvarint count |
//	count x (uvarint len(key) | key | uvarint len(value) | value) |
//	CRC32C (Castagnoli, little endian) of everything before it
//
// It is replaced atomically on every Set: write stable.tmp, fsync it, rename
// it over stable, fsync the directory. A crash leaves either the old or the
// new file, never a mix, so a bad checksum means damage and Open refuses it.
const (
	stableMagic   = "WSTB"
	stableVersion = 1
)

// loadStable reads the stable file into memory. A missing file is an empty
// store.
func (s *Store) loadStable() error {
	path := filepath.Join(s.dir, stableFileName)
	if err := os.Remove(path + ".tmp"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("walstore: remove stale temp file: %w", err)
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		s.kv = make(map[string][]byte)
		return nil
	}
	if err != nil {
		return fmt.Errorf("walstore: read stable keys: %w", err)
	}
	kv, err := decodeStable(b)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	s.kv = kv
	return nil
}

func encodeStable(kv map[string][]byte) []byte {
	keys := make([]string, 0, len(kv))
	size := len(stableMagic) + 1 + binary.MaxVarintLen64 + 4
	for k, v := range kv {
		keys = append(keys, k)
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	slices.Sort(keys) // deterministic bytes
	b := make([]byte, 0, size)
	b = append(b, stableMagic...)
	b = append(b, stableVersion)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(kv[k])))
		b = append(b, kv[k]...)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeStable(b []byte) (map[string][]byte, error) {
	if len(b) < len(stableMagic)+1+1+4 || string(b[:len(stableMagic)]) != stableMagic {
		return nil, errors.New("not a stable key file")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", sum, got)
	}
	if v := body[len(stableMagic)]; v != stableVersion {
		return nil, fmt.Errorf("unknown version %d", v)
	}
	p := body[len(stableMagic)+1:]
	next := func() ([]byte, error) {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return nil, errors.New("truncated entry")
		}
		v := p[k : k+int(n)]
		p = p[k+int(n):]
		return v, nil
	}
	count, k := binary.Uvarint(p)
	if k <= 0 || count > uint64(len(p)) {
		return nil, errors.New("bad key count")
	}
	p = p[k:]
	kv := make(map[string][]byte, count)
	for range count {
		key, err := next()
		if err != nil {
			return nil, err
		}
		val, err := next()
		if err != nil {
			return nil, err
		}
		kv[string(key)] = slices.Clone(val)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(p))
	}
	return kv, nil
}

// Set stores val under key durably (the whole key file is replaced
// atomically, with fsyncs). Keys share one namespace with SetUint64.
func (s *Store) Set(key []byte, val []byte) error {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.sclosed {
		return ErrClosed
	}
	if err := s.failure(); err != nil {
		return err
	}
	k := string(key)
	old, had := s.kv[k]
	s.kv[k] = append(make([]byte, 0, len(val)), val...)
	if err := s.writeStable(); err != nil {
		if had {
			s.kv[k] = old
		} else {
			delete(s.kv, k)
		}
		return s.fail(err)
	}
	return nil
}

// Get returns a copy of the value stored under key, or (nil, [ErrKeyNotFound])
// if there is none. raft accepts exactly that error text ("not found").
func (s *Store) Get(key []byte) ([]byte, error) {
	s.smu.Lock()
	defer s.smu.Unlock()
	if s.sclosed {
		return nil, ErrClosed
	}
	v, ok := s.kv[string(key)]
	if !ok {
		return nil, ErrKeyNotFound
	}
	return append(make([]byte, 0, len(v)), v...), nil
}

// SetUint64 stores val under key as 8 big-endian bytes (as raft-boltdb does).
func (s *Store) SetUint64(key []byte, val uint64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], val)
	return s.Set(key, b[:])
}

// GetUint64 returns the value stored by SetUint64 under key, or
// (0, [ErrKeyNotFound]) if there is none, as raft-boltdb does (raft accepts
// that error text). A value that is not 8 bytes long is an error.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("walstore: value of key %q is %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// writeStable replaces the stable file with the current keys.
func (s *Store) writeStable() error {
	path := filepath.Join(s.dir, stableFileName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("walstore: write stable keys: %w", err)
	}
	_, err = f.Write(encodeStable(s.kv))
	if err == nil && !s.opts.NoSync {
		s.syncs.Add(1)
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("walstore: write stable keys: %w", err)
	}
	return s.syncDir(s.dir)
}
