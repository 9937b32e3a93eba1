package main

import (
	"context"
	"fmt"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
)

// newS3 and newAzure connect the cloud backends. (Wired once storage/s3
// and storage/azure land.)
func newS3(ctx context.Context, c config.S3, path string) (stowage.Backend, string, error) {
	return nil, "", fmt.Errorf("%s: the s3 backend is not in this build yet", path)
}

func newAzure(ctx context.Context, c config.Azure, path string) (stowage.Backend, string, error) {
	return nil, "", fmt.Errorf("%s: the azure backend is not in this build yet", path)
}
