package crypt

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/stowage/stowage"
)

// ExecKMS is a KMS plug-in run as a separate program (config
// `encryption.kms_command`), so any KMS (a cloud key vault, an HSM, Vault's
// transit engine) can hold the KEK without Stowage linking its SDK. The
// program is started once and kept running; Stowage writes one JSON request
// per line to its stdin and reads one JSON response per line from its
// stdout:
//
//	{"op":"current"}                                  -> {"key_id":"k1","version":3}
//	{"op":"wrap","key_id":"k1","version":3,"data":B}   -> {"data":B'}
//	{"op":"unwrap","key_id":"k1","version":3,"data":B} -> {"data":B''}
//
// where data is base64 ([]byte in JSON). A failure is {"error":"message"}
// with "unavailable":true (the key cannot be used now: disabled, revoked,
// the KMS unreachable) or "wrong_key":true (the data does not open with that
// key). A program that exits is started again at the next request; a
// request that takes longer than Timeout counts as "unavailable".
type ExecKMS struct {
	Command []string
	Timeout time.Duration // default 10s

	mu  sync.Mutex
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

type kmsRequest struct {
	Op      string `json:"op"`
	KeyID   string `json:"key_id,omitempty"`
	Version uint32 `json:"version,omitempty"`
	Data    []byte `json:"data,omitempty"`
}

type kmsResponse struct {
	KeyID       string `json:"key_id"`
	Version     uint32 `json:"version"`
	Data        []byte `json:"data"`
	Error       string `json:"error"`
	Unavailable bool   `json:"unavailable"`
	WrongKey    bool   `json:"wrong_key"`
}

// Describe names the plug-in program (not its arguments, which may hold
// secrets).
func (k *ExecKMS) Describe() string {
	if len(k.Command) == 0 {
		return "KMS plug-in (none configured)"
	}
	return "KMS plug-in " + filepath.Base(k.Command[0])
}

func (k *ExecKMS) Current(ctx context.Context) (stowage.KeyVersion, error) {
	resp, err := k.call(ctx, kmsRequest{Op: "current"})
	if err != nil {
		return stowage.KeyVersion{}, err
	}
	if resp.KeyID == "" || resp.Version == 0 {
		return stowage.KeyVersion{}, fmt.Errorf("%w: the KMS plug-in answered \"current\" without a key_id and version", ErrKeyUnavailable)
	}
	return stowage.KeyVersion{ID: resp.KeyID, Version: resp.Version}, nil
}

func (k *ExecKMS) Wrap(ctx context.Context, kv stowage.KeyVersion, dek []byte) ([]byte, error) {
	resp, err := k.call(ctx, kmsRequest{Op: "wrap", KeyID: kv.ID, Version: kv.Version, Data: dek})
	return resp.Data, err
}

func (k *ExecKMS) Unwrap(ctx context.Context, kv stowage.KeyVersion, wrapped []byte) ([]byte, error) {
	resp, err := k.call(ctx, kmsRequest{Op: "unwrap", KeyID: kv.ID, Version: kv.Version, Data: wrapped})
	if err == nil && len(resp.Data) != 32 {
		return nil, fmt.Errorf("%w: the KMS plug-in returned a %d-byte data key", ErrWrongKey, len(resp.Data))
	}
	return resp.Data, err
}

// Close stops the plug-in.
func (k *ExecKMS) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stop()
	return nil
}

func (k *ExecKMS) stop() {
	if k.cmd != nil {
		k.in.Close()
		k.cmd.Process.Kill()
		k.cmd.Wait()
		k.cmd = nil
	}
}

func (k *ExecKMS) start() error {
	if len(k.Command) == 0 {
		return errors.New("kms_command is empty")
	}
	cmd := exec.Command(k.Command[0], k.Command[1:]...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the KMS plug-in %s: %w", k.Command[0], err)
	}
	k.cmd, k.in, k.out = cmd, in, bufio.NewReader(out)
	return nil
}

// call sends one request and waits for its answer; requests are serialized.
func (k *ExecKMS) call(_ context.Context, req kmsRequest) (kmsResponse, error) {
	var resp kmsResponse
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil {
		if err := k.start(); err != nil {
			return resp, fmt.Errorf("%w: %v", ErrKeyUnavailable, err)
		}
	}
	line, _ := json.Marshal(req)
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		if _, err := k.in.Write(append(line, '\n')); err != nil {
			done <- result{nil, err}
			return
		}
		b, err := k.out.ReadBytes('\n')
		done <- result{b, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(timeout):
		res.err = fmt.Errorf("no answer in %v", timeout)
	}
	// A request whose client went away still waits for its answer (within
	// the timeout): stopping the plug-in for that would fail everyone else.
	if res.err != nil {
		k.stop() // a half-read answer cannot be resynchronized: start afresh next time
		return resp, fmt.Errorf("%w: KMS plug-in: %v", ErrKeyUnavailable, res.err)
	}
	if err := json.Unmarshal(res.b, &resp); err != nil {
		k.stop()
		return resp, fmt.Errorf("%w: KMS plug-in answered something that is not JSON: %v", ErrKeyUnavailable, err)
	}
	switch {
	case resp.Error == "":
		return resp, nil
	case resp.WrongKey:
		return resp, fmt.Errorf("%w: KMS plug-in: %s", ErrWrongKey, resp.Error)
	default:
		return resp, fmt.Errorf("%w: KMS plug-in: %s", ErrKeyUnavailable, resp.Error)
	}
}
