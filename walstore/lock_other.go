//go:build !unix

package walstore

import (
	"fmt"
	"os"
)

// lockDir only opens the lock file: there is no flock on this platform, so
// two stores can open the same directory. The project targets Linux.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("walstore: open lock file: %w", err)
	}
	return f, nil
}

// unlockDir closes the lock file.
func unlockDir(f *os.File) error { return f.Close() }
