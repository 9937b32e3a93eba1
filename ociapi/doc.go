// Package ociapi serves the OCI Distribution API (/v2/) over a stowage.Registry.
package ociapi
