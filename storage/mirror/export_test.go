package mirror

import (
	"time"

	"github.com/stowage/stowage"
)

// RecheckLostNow makes the next Repair check the lost objects again.
func RecheckLostNow(b stowage.Backend) {
	m, ok := b.(*Backend)
	if !ok {
		m = b.(*appendBackend).Backend
	}
	m.mu.Lock()
	m.lostChecked = time.Time{}
	m.mu.Unlock()
}
