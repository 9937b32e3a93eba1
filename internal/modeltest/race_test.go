//go:build race

package modeltest

// raceEnabled shortens the default run under the race detector (CI's unit
// stage runs go test -race), which slows the engine several times.
const raceEnabled = true
