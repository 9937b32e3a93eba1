package main

import (
	"context"
	"fmt"
	"os"

	"github.com/stowage/stowage"
	"github.com/stowage/stowage/config"
	"github.com/stowage/stowage/storage/azure"
	"github.com/stowage/stowage/storage/s3"
)

// newS3 connects an S3 bucket (New checks that it is reachable and says
// what is wrong when it is not).
func newS3(ctx context.Context, c config.S3, path string) (stowage.Backend, string, error) {
	secret := c.SecretAccessKey
	if c.SecretKeyEnv != "" {
		secret = os.Getenv(c.SecretKeyEnv)
		if secret == "" {
			return nil, "", fmt.Errorf("%s.s3.secret_access_key_env: the variable %s is empty or not set", path, c.SecretKeyEnv)
		}
	}
	b, err := s3.New(ctx, s3.Config{Endpoint: c.Endpoint, Region: c.Region, Bucket: c.Bucket, Prefix: c.Prefix,
		AccessKeyID: c.AccessKeyID, SecretAccessKey: secret, UsePathStyle: c.PathStyle})
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	desc := "s3://" + c.Bucket + "/" + c.Prefix
	if c.Endpoint != "" {
		desc += " at " + c.Endpoint
	}
	return b, desc, nil
}

// newAzure connects an Azure Blob Storage container.
func newAzure(ctx context.Context, c config.Azure, path string) (stowage.Backend, string, error) {
	conn, key := c.ConnectionString, c.AccountKey
	if c.ConnectionStringEnv != "" {
		if conn = os.Getenv(c.ConnectionStringEnv); conn == "" {
			return nil, "", fmt.Errorf("%s.azure.connection_string_env: the variable %s is empty or not set", path, c.ConnectionStringEnv)
		}
	}
	if c.AccountKeyEnv != "" {
		if key = os.Getenv(c.AccountKeyEnv); key == "" {
			return nil, "", fmt.Errorf("%s.azure.account_key_env: the variable %s is empty or not set", path, c.AccountKeyEnv)
		}
	}
	b, err := azure.New(ctx, azure.Config{AccountName: c.AccountName, AccountKey: key, ConnectionString: conn,
		ServiceURL: c.ServiceURL, Container: c.Container, Prefix: c.Prefix})
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return b, "azure container " + c.Container + "/" + c.Prefix, nil
}
