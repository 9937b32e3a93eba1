package ociapi_test

import "github.com/opencontainers/go-digest"

// A digest and an upload ID for paths in tests.
var (
	rd   = digest.FromString("route")
	upID = "0123456789abcdef0123456789abcdef"
)
